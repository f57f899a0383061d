"""data_utils.demo (scripts/make_demo_data.py): a corpus in the ASVspoof 2019 LA layout that the data path reads,
with no shortcut of level or length between the classes, an unseen eval attack, and the same files for the same
seed."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_utils import SAMPLE_RATE, SPLITS, check_audio_exists, load_audio, read_protocol, split_paths
from data_utils.demo import write_demo_corpus
from utils.config import load_config

SCALE = 0.03  # two utterances of each source in each split, 38 in all: the smallest full corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seed0") / "LA"
    write_demo_corpus(out, seed=0, scale=SCALE)
    return out


@pytest.fixture(scope="module")
def audio(corpus: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Per split: (attack, waveform) of every utterance, read as training reads it."""
    out = {}
    for split in SPLITS:
        paths = split_paths(corpus, split)
        entries = read_protocol(paths.protocol)
        out[split] = [(e.attack, load_audio(paths.audio_dir / f"{e.utt_id}.flac")) for e in entries]
    return out


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_protocols_are_those_of_2019_la(corpus: Path) -> None:
    for split, prefix in zip(SPLITS, ("LA_T_", "LA_D_", "LA_E_")):
        paths = split_paths(corpus, split)
        entries = read_protocol(paths.protocol)
        check_audio_exists(entries, paths.audio_dir)
        assert {e.key for e in entries} == {"bonafide", "spoof"}
        assert all(e.utt_id.startswith(prefix) and len(e.utt_id) == len(prefix) + 7 for e in entries)
        assert all((e.attack == "-") == (e.key == "bonafide") for e in entries)
        assert all(line.split()[2] == "-" for line in paths.protocol.read_text().splitlines())
        assert len(list(paths.audio_dir.iterdir())) == len(entries)
        if paths.asv_scores is not None:
            asv = [line.split() for line in paths.asv_scores.read_text().splitlines()]
            assert {key for _, key, _ in asv} == {"target", "nontarget", "spoof"}
            assert {src for src, key, _ in asv if key == "spoof"} == {e.attack for e in entries if e.key == "spoof"}
            target = np.mean([float(s) for _, key, s in asv if key == "target"])
            nontarget = np.mean([float(s) for _, key, s in asv if key == "nontarget"])
            spoof = np.mean([float(s) for _, key, s in asv if key == "spoof"])
            assert nontarget < spoof < target


def test_eval_has_an_attack_training_never_saw(corpus: Path) -> None:
    attacks = {split: {e.attack for e in read_protocol(split_paths(corpus, split).protocol)} - {"-"}
               for split in SPLITS}
    assert attacks["train"] == attacks["dev"] == {f"A0{i}" for i in range(1, 7)}
    assert attacks["eval"] - attacks["train"]


def test_audio_is_16k_mono_of_varied_length_around_nb_samp(corpus: Path, audio, repo_root: Path) -> None:
    for split in SPLITS:
        for path in split_paths(corpus, split).audio_dir.iterdir():
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    nb_samp = load_config(repo_root / "config" / "demo.json").model_config.nb_samp
    lengths = np.array([x.shape[0] for split in SPLITS for _, x in audio[split]])
    assert (lengths < nb_samp).any() and (lengths > nb_samp).any()


def test_bonafide_and_spoof_have_the_same_level(audio) -> None:
    """No level shortcut: the two classes' RMS levels (dBFS) have about the same mean and spread."""
    rms_db = {"bonafide": [], "spoof": []}
    for split in SPLITS:
        for attack, x in audio[split]:
            rms_db["bonafide" if attack == "-" else "spoof"].append(20 * np.log10(np.sqrt(np.mean(x**2))))
    bonafide, spoof = np.array(rms_db["bonafide"]), np.array(rms_db["spoof"])
    assert abs(bonafide.mean() - spoof.mean()) < 1.5
    assert bonafide.min() > -31 and spoof.min() > -31 and bonafide.max() < -21 and spoof.max() < -21


def test_same_seed_same_files_other_seed_other_files(corpus: Path, tmp_path: Path) -> None:
    summary = write_demo_corpus(tmp_path / "again", seed=0, scale=SCALE)
    assert [line.split()[0] for line in summary] == list(SPLITS)
    assert sum(int(line.split()[1]) for line in summary) == 38
    again = file_bytes(tmp_path / "again")
    assert again == file_bytes(corpus)
    write_demo_corpus(tmp_path / "other", seed=1, scale=SCALE)
    other = file_bytes(tmp_path / "other")
    assert set(other) != set(again)  # new utterance ids
    assert sorted(other.values()) != sorted(again.values())


def test_scale_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scale must be positive, got 0"):
        write_demo_corpus(tmp_path, scale=0)
    assert not any(tmp_path.iterdir())
