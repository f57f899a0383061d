"""The data path of AASIST_SPEC.md section 7, and the error a user gets for each bad input."""
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from data_utils import (
    EvalDataset,
    ProtocolEntry,
    TrainDataset,
    check_audio_exists,
    load_audio,
    pad_repeat,
    random_crop,
    read_protocol,
    split_paths,
)
from utils.errors import InputError

NB_SAMP = 64600


def published_pad(x: np.ndarray, max_len: int) -> np.ndarray:
    """The published code's pad (clovaai/aasist data_utils.pad), restated for comparison."""
    x_len = x.shape[0]
    if x_len >= max_len:
        return x[:max_len]
    num_repeats = int(max_len / x_len) + 1
    return np.tile(x, (1, num_repeats))[:, :max_len][0]


def write_protocol(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def write_flac(path: Path, x: np.ndarray, sr: int = 16000) -> Path:
    sf.write(path, x, sr, subtype="PCM_16")
    return path


# An eval protocol in the ASVspoof 2019 LA format, and the length of each utterance in samples: on both
# sides of NB_SAMP (and exactly it), so the repeat-pad and the cut both run.
EVAL_PROTOCOL = [
    "LA_0030 LA_E_2000000 - - bonafide",
    "LA_0031 LA_E_2000017 - A08 spoof",
    "LA_0032 LA_E_2000034 - - bonafide",
    "LA_0033 LA_E_2000051 - A10 spoof",
    "LA_0034 LA_E_2000068 - - bonafide",
    "LA_0035 LA_E_2000085 - A12 spoof",
]
EVAL_LENGTHS = [8000, 30000, 64600, 90000, 12345, 70000]


@pytest.fixture(scope="module")
def eval_split(tmp_path_factory):
    """A generated eval split, written where the corpus keeps it (spelled out here, not by split_paths)."""
    root = tmp_path_factory.mktemp("LA")
    audio_dir = root / "ASVspoof2019_LA_eval" / "flac"
    protocol = root / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.eval.trl.txt"
    audio_dir.mkdir(parents=True)
    protocol.parent.mkdir()
    write_protocol(protocol, EVAL_PROTOCOL)
    rng = np.random.default_rng(0)
    for line, length in zip(EVAL_PROTOCOL, EVAL_LENGTHS):
        write_flac(audio_dir / f"{line.split()[1]}.flac", rng.uniform(-0.5, 0.5, length))
    paths = split_paths(root, "eval")
    assert (paths.audio_dir, paths.protocol) == (audio_dir, protocol)
    return paths, read_protocol(paths.protocol)


# --- protocols and paths --------------------------------------------------------------------------


def test_split_paths_follow_the_corpus_layout(tmp_path: Path) -> None:
    train, dev = split_paths(tmp_path, "train"), split_paths(tmp_path, "dev")
    assert train.audio_dir == tmp_path / "ASVspoof2019_LA_train" / "flac"
    assert train.protocol == tmp_path / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.train.trn.txt"
    assert train.asv_scores is None
    assert dev.protocol.name == "ASVspoof2019.LA.cm.dev.trl.txt"
    assert dev.asv_scores == tmp_path / "ASVspoof2019_LA_asv_scores" / "ASVspoof2019.LA.asv.dev.gi.trl.scores.txt"
    with pytest.raises(InputError, match="'test'"):
        split_paths(tmp_path, "test")


def test_read_protocol_eval(eval_split) -> None:
    _, entries = eval_split
    assert [e.utt_id for e in entries] == [f"LA_E_{2000000 + 17 * i}" for i in range(6)]
    assert entries[0] == ProtocolEntry("LA_0030", "LA_E_2000000", "-", "bonafide")
    assert entries[1] == ProtocolEntry("LA_0031", "LA_E_2000017", "A08", "spoof")
    assert [e.label for e in entries] == [1, 0, 1, 0, 1, 0]
    assert [e.attack for e in entries] == ["-", "A08", "-", "A10", "-", "A12"]


def test_read_protocol_skips_blank_lines(tmp_path: Path) -> None:
    lines = ["", "LA_0079 LA_T_1138215 - - bonafide", "   ", "LA_0079 LA_T_1271820 - A01 spoof"]
    path = write_protocol(tmp_path / "p.txt", lines)
    assert [(e.utt_id, e.label) for e in read_protocol(path)] == [("LA_T_1138215", 1), ("LA_T_1271820", 0)]


def test_protocol_line_with_wrong_field_count_names_file_and_line(tmp_path: Path) -> None:
    lines = ["LA_0079 LA_T_1138215 - - bonafide", "", "LA_0079 LA_T_1271820 A01 spoof"]
    path = write_protocol(tmp_path / "p.txt", lines)
    with pytest.raises(InputError, match=r"p\.txt, line 3: expected 5 fields"):
        read_protocol(path)


def test_protocol_wrong_key_names_file_and_line(tmp_path: Path) -> None:
    path = write_protocol(tmp_path / "p.txt", ["LA_0079 LA_T_1138215 - - bonafide", "LA_0079 LA_T_1271820 - A01 fake"])
    with pytest.raises(InputError, match=r"p\.txt, line 2: KEY must be 'bonafide' or 'spoof', got 'fake'"):
        read_protocol(path)


def test_repeated_utterance_id_names_the_id_and_both_lines(tmp_path: Path) -> None:
    # A repeated trial would be scored twice and move the EER.
    lines = ["LA_0079 LA_T_1138215 - - bonafide", "LA_0079 LA_T_1271820 - A01 spoof", "",
             "LA_0079 LA_T_1138215 - - bonafide"]
    path = write_protocol(tmp_path / "p.txt", lines)
    with pytest.raises(InputError, match=r"p\.txt, line 4: utterance id 'LA_T_1138215' is already on line 1$"):
        read_protocol(path)


def test_empty_or_missing_protocol_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no entries"):
        read_protocol(write_protocol(tmp_path / "empty.txt", ["", ""]))
    with pytest.raises(InputError, match="absent.txt"):
        read_protocol(tmp_path / "absent.txt")


# --- audio ----------------------------------------------------------------------------------------


def test_load_audio_is_soundfile_float64_cast_to_float32(eval_split) -> None:
    paths, entries = eval_split
    path = paths.audio_dir / f"{entries[0].utt_id}.flac"
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    np.testing.assert_array_equal(x, sf.read(path)[0].astype(np.float32))


def test_load_audio_averages_stereo_to_mono(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    left, right = (rng.integers(-32768, 32768, 1000) / 32768.0 for _ in range(2))  # exact in PCM_16
    path = write_flac(tmp_path / "stereo.flac", np.stack([left, right], axis=1))
    np.testing.assert_array_equal(load_audio(path), ((left + right) / 2).astype(np.float32))


def test_missing_audio_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found: .*absent.flac"):
        load_audio(tmp_path / "absent.flac")


def test_corrupt_audio_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.flac"
    path.write_bytes(b"this is not a flac file" * 10)
    with pytest.raises(InputError, match="cannot read audio file .*garbage.flac"):
        load_audio(path)


def test_empty_audio_names_the_file(tmp_path: Path) -> None:
    # libsndfile writes a zero-sample FLAC as a 0-byte file.
    zero_flac = write_flac(tmp_path / "empty.flac", np.zeros(0))
    with pytest.raises(InputError, match="empty.flac is empty"):
        load_audio(zero_flac)
    # A readable header with no samples after it.
    zero_wav = tmp_path / "header_only.flac"
    sf.write(zero_wav, np.zeros(0), 16000, format="WAV")
    with pytest.raises(InputError, match="header_only.flac has no samples"):
        load_audio(zero_wav)


def test_wrong_sample_rate_names_file_and_both_rates(tmp_path: Path) -> None:
    path = write_flac(tmp_path / "narrowband.flac", np.zeros(800), sr=8000)
    with pytest.raises(InputError, match="narrowband.flac is 8000 Hz; AASIST expects 16000 Hz"):
        load_audio(path)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_audio_names_the_file(tmp_path: Path, bad: float) -> None:
    # FLAC holds integers; a float WAV (here under a .flac name) can hold NaN and inf.
    x = np.zeros(1000)
    x[[123, 456]] = bad
    path = tmp_path / "LA_T_1000001.flac"
    sf.write(path, x, 16000, format="WAV", subtype="FLOAT")
    message = r"LA_T_1000001\.flac holds 2 NaN or infinite sample\(s\), the first at sample 123"
    with pytest.raises(InputError, match=message):
        load_audio(path)


# --- crop and pad ---------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 7, 8000, 64599, 64600, 64601, 90000])
def test_pad_repeat_matches_the_published_pad(length: int) -> None:
    x = np.random.default_rng(length).standard_normal(length).astype(np.float32)
    y = pad_repeat(x, NB_SAMP)
    assert y.shape == (NB_SAMP,) and y.dtype == np.float32
    np.testing.assert_array_equal(y, published_pad(x, NB_SAMP))


def test_pad_repeat_repeats_end_to_end() -> None:
    np.testing.assert_array_equal(pad_repeat(np.array([1, 2, 3]), 8), [1, 2, 3, 1, 2, 3, 1, 2])


def test_random_crop_on_exactly_nb_samp_samples() -> None:
    # The published randint(len - nb_samp) raised here (randint(0)).
    x = np.arange(NB_SAMP, dtype=np.float32)
    np.random.seed(0)
    for _ in range(5):
        np.testing.assert_array_equal(random_crop(x, NB_SAMP), x)


def test_random_crop_reaches_every_offset_including_the_last() -> None:
    nb_samp = 10
    x = np.arange(nb_samp + 2, dtype=np.float32)  # the first sample of a window is its offset
    np.random.seed(0)
    crops = [random_crop(x, nb_samp) for _ in range(100)]
    for y in crops:
        np.testing.assert_array_equal(y, x[int(y[0]) : int(y[0]) + nb_samp])
    assert {int(y[0]) for y in crops} == {0, 1, 2}
    rng = np.random.default_rng(0)
    assert {int(random_crop(x, nb_samp, rng)[0]) for _ in range(100)} == {0, 1, 2}


def test_random_crop_is_reproducible_from_numpy_seed() -> None:
    x = np.arange(1000, dtype=np.float32)
    np.random.seed(1234)
    first = [random_crop(x, 100)[0] for _ in range(10)]
    np.random.seed(1234)
    assert [random_crop(x, 100)[0] for _ in range(10)] == first


def test_random_crop_repeat_pads_short_input() -> None:
    x = np.arange(7, dtype=np.float32)
    np.testing.assert_array_equal(random_crop(x, 20), np.tile(x, 3)[:20])


# --- datasets and the pre-flight check ------------------------------------------------------------


def test_eval_dataset_pads_and_cuts_like_the_published_code(eval_split) -> None:
    paths, entries = eval_split
    dataset = EvalDataset(entries, paths.audio_dir, NB_SAMP)
    assert len(dataset) == 6 and dataset.entries == entries
    for i, entry in enumerate(entries):
        x, utt_id = dataset[i]
        assert utt_id == entry.utt_id
        assert x.shape == (NB_SAMP,) and x.dtype == torch.float32
        expected = published_pad(sf.read(paths.audio_dir / f"{utt_id}.flac")[0], NB_SAMP).astype(np.float32)
        np.testing.assert_array_equal(x.numpy(), expected)
    batch, ids = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch.shape == (4, NB_SAMP) and list(ids) == [e.utt_id for e in entries[:4]]


def test_train_dataset_returns_crop_and_label(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_flac(tmp_path / "long.flac", rng.uniform(-0.5, 0.5, 2000))
    write_flac(tmp_path / "short.flac", rng.uniform(-0.5, 0.5, 300))
    entries = [ProtocolEntry("LA_0001", "long", "-", "bonafide"), ProtocolEntry("LA_0002", "short", "A01", "spoof")]
    dataset = TrainDataset(entries, tmp_path, nb_samp=1000)
    np.random.seed(0)
    (x0, y0), (x1, y1) = dataset[0], dataset[1]
    assert (y0, y1) == (1, 0)
    assert x0.shape == x1.shape == (1000,) and x0.dtype == x1.dtype == torch.float32
    np.testing.assert_array_equal(x1.numpy(), pad_repeat(load_audio(tmp_path / "short.flac"), 1000))
    np.random.seed(0)
    np.testing.assert_array_equal(dataset[0][0].numpy(), x0.numpy())


def test_check_audio_exists_passes_when_all_are_there(eval_split) -> None:
    paths, entries = eval_split
    check_audio_exists(entries, paths.audio_dir)


def test_check_audio_exists_reports_count_and_first_few(tmp_path: Path) -> None:
    entries = [ProtocolEntry("LA_0001", f"LA_T_{i:07d}", "-", "bonafide") for i in range(8)]
    write_flac(tmp_path / "LA_T_0000000.flac", np.zeros(10))
    with pytest.raises(InputError) as info:
        check_audio_exists(entries, tmp_path)
    message = str(info.value)
    assert "7 of 8 audio files" in message and str(tmp_path) in message
    assert all(f"LA_T_{i:07d}.flac" in message for i in range(1, 6))
    assert "LA_T_0000006" not in message and "LA_T_0000000" not in message


# --- the training crop is part of the recipe ---------------------------------------------------------


def test_ssl_recipes_train_on_the_first_samples_after_rawboost(repo_root, tmp_path: Path) -> None:
    # The published SSL-AASIST loader (data_utils_SSL.Dataset_ASVspoof2019_train): RawBoost, then pad(x, 64600),
    # the first 64,600 samples (repeated when shorter); AASIST's takes a random window.
    from data_utils.augmentation.augmenter import Augmenter
    from utils.config import AugmentationConfig
    from utils.config import load_config
    for name, crop in (("SSL_AASIST_LA", "first"), ("SSL_AASIST_DF", "first"), ("config", "random"),
                       ("AASIST-L", "random")):
        assert load_config(repo_root / "config" / f"{name}.json").train_crop == crop, name
    rng = np.random.default_rng(0)
    write_flac(tmp_path / "long.flac", rng.uniform(-0.5, 0.5, 2000))
    write_flac(tmp_path / "short.flac", rng.uniform(-0.5, 0.5, 300))
    entries = [ProtocolEntry("LA_0001", "long", "-", "bonafide"), ProtocolEntry("LA_0002", "short", "A01", "spoof")]
    augment = Augmenter(AugmentationConfig(rawboost_algo=5))
    first = TrainDataset(entries, tmp_path, nb_samp=1000, augment=augment, crop="first")
    for index, name in enumerate(("long", "short")):
        x, _ = first[(index, 1234)]
        boosted = augment(load_audio(tmp_path / f"{name}.flac"), 1234)
        np.testing.assert_array_equal(x.numpy(), pad_repeat(boosted, 1000))
    windows = {TrainDataset(entries, tmp_path, nb_samp=1000)[(0, seed)][0].numpy()[0] for seed in range(20)}
    assert len(windows) > 1  # "random" (the default) still moves the window


def test_an_unknown_train_crop_is_refused(repo_root, tmp_path: Path) -> None:
    import json
    from utils.config import load_config
    config = json.loads((repo_root / "config" / "config.json").read_text())
    (tmp_path / "c.json").write_text(json.dumps({**config, "train_crop": "middle"}))
    with pytest.raises(InputError, match=r"c\.json: train_crop must be 'random' or 'first'"):
        load_config(tmp_path / "c.json")
