"""Training augmentation (data_utils/augmentation/augmenter.py): the codec round trip, the config and its errors, and where
and how TrainDataset applies it (whole utterance, before the crop, every draw from the item's crop seed)."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from data_utils import (EvalDataset, TrainDataset, TrainSampler, load_audio, load_split, pad_repeat, random_crop,
                        split_paths)
from data_utils.augmentation import augmenter as augment
from data_utils.augmentation.augmenter import CODECS, Augmenter, codec_round_trip
from data_utils.augmentation.rawboost import RawBoostParams
from utils import config as config_module
from utils.config import AugmentationConfig, config_from_dict, config_to_dict, load_config
from utils.errors import InputError

SR = 16000
NB_SAMP = 4000
LENGTHS = [3000, 4000, 5200, 7000, 9100, 12000]  # on both sides of NB_SAMP: repeat-pad and crop both run


def tone(n: int, freq: float = 1000.0, seed: int = 0) -> np.ndarray:
    """A sine with a little noise, float32 (n,)."""
    t = np.arange(n) / SR
    noise = 0.01 * np.random.default_rng(seed).standard_normal(n)
    return (0.4 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def make_split(root: Path, split: str) -> list[Path]:
    """An ASVspoof 2019 LA layout for ``split``: one flac per length of LENGTHS, both classes."""
    paths = split_paths(root, split)
    paths.audio_dir.mkdir(parents=True, exist_ok=True)
    paths.protocol.parent.mkdir(parents=True, exist_ok=True)
    utt_ids = [f"LA_{split[0].upper()}_{1000000 + i}" for i in range(len(LENGTHS))]
    keys = ["bonafide", "spoof"] * (len(LENGTHS) // 2)
    paths.protocol.write_text("".join(f"LA_0001 {u} - {'-' if k == 'bonafide' else 'A01'} {k}\n"
                                      for u, k in zip(utt_ids, keys)))
    files = []
    for i, (utt_id, n) in enumerate(zip(utt_ids, LENGTHS)):
        files.append(paths.audio_dir / f"{utt_id}.flac")
        sf.write(files[-1], tone(n, 300 + 100 * i, seed=i), SR, subtype="PCM_16")
    return files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    make_split(root, "train")
    make_split(root, "dev")
    return root


def augmentation(**changes) -> AugmentationConfig:
    raw = {"rawboost_algo": 5, "codec_prob": 0.5, "codecs": list(CODECS), "codec_compression": [0.1, 0.9]}
    return config_from_dict({**base_config(), "augmentation": {**raw, **changes}}).augmentation


def base_config() -> dict:
    return json.loads((Path(__file__).resolve().parent.parent / "config" / "config.json").read_text())


# --- codec round trip ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("n", [1, 999, 12345, 64600])
def test_codec_round_trip_keeps_length_and_rate_and_changes_the_signal(codec, n):
    x = tone(n)
    y = codec_round_trip(x, codec, 0.5)
    assert y.shape == x.shape and y.dtype == np.float32
    assert not np.array_equal(y, x)
    if n >= 12345:  # long enough to see where the tone lies and that nothing shifted it
        spectrum = np.abs(np.fft.rfft(y))
        assert abs(np.argmax(spectrum) * SR / n - 1000) < 5  # still 1 kHz: decoded at 16 kHz
        assert np.corrcoef(x, y)[0, 1] > 0.9  # aligned: the codec's delay and padding are removed


def test_codec_compression_level_sets_the_quality():
    x = tone(32000)
    errors = [np.abs(codec_round_trip(x, "opus", level) - x).mean() for level in (0.0, 0.9)]
    assert errors[0] < errors[1]


# --- config and start-up errors ---------------------------------------------------------------------------------

def test_no_augmentation_key_means_none_and_round_trips():
    config = config_from_dict(base_config())
    assert config.augmentation is None
    assert config_from_dict(config_to_dict(config)) == config


def test_augmentation_round_trips_through_the_resolved_config():
    config = config_from_dict({**base_config(), "augmentation": {"rawboost_algo": 3, "rawboost": {"SNRmin": 5}}})
    assert config.augmentation.rawboost == RawBoostParams(SNRmin=5)
    assert config_from_dict(json.loads(json.dumps(config_to_dict(config)))) == config


@pytest.mark.parametrize("changes, key", [
    ({"codec_probability": 0.1}, "augmentation.codec_probability"),
    ({"rawboost": {"nbands": 5}}, "augmentation.rawboost.nbands"),
    ({"rawboost": {"N_f": "5"}}, "augmentation.rawboost.N_f"),
    ({"rawboost": {"N_f": 0}}, "rawboost.N_f"),
    ({"rawboost_algo": 9}, "augmentation.rawboost_algo"),
    ({"rawboost_algo": 5.0}, "augmentation.rawboost_algo"),
    ({"codec_prob": 1.5}, "augmentation.codec_prob"),
    ({"codecs": ["mp3", "aac"]}, "augmentation.codecs[1]"),
    ({"codecs": ["mp3", "mp3"]}, "augmentation.codecs"),
    ({"codecs": []}, "augmentation.codecs"),
    ({"codec_compression": [0.9, 0.1]}, "augmentation.codec_compression"),
    ({"codec_compression": [0.5]}, "augmentation.codec_compression"),
])
def test_a_bad_augmentation_setting_is_an_input_error_naming_it(changes, key):
    with pytest.raises(InputError, match=key.replace(".", r"\.").replace("[", r"\[").replace("]", r"\]")):
        augmentation(**changes)


@pytest.mark.parametrize("changes, message", [
    ({"rawboost_algo": 5.0}, "augmentation.rawboost_algo must be int, got 5.0"),
    ({"codec_prob": True}, "augmentation.codec_prob must be float, got True"),
    ({"codecs": "mp3"}, "augmentation.codecs must be a list, got 'mp3'"),
    ({"codec_compression": [0.1, float("nan")]}, "augmentation.codec_compression[1] must be a finite number"),
    ({"rawboost": {"P": 5}}, "augmentation.rawboost must be RawBoostParams"),
])
def test_an_augmentation_config_built_in_python_is_validated_too(changes, message):
    """The augmenter trusts its config: a config made in Python is checked as one read from JSON is."""
    with pytest.raises(InputError) as error:
        AugmentationConfig(**changes)
    assert str(error.value).startswith(message)


def test_codec_names_have_one_home():
    assert augment.CODECS is config_module.CODECS
    assert AugmentationConfig().codecs == ["mp3", "vorbis", "opus"] == list(CODECS)


def test_a_codec_libsndfile_lacks_stops_the_run_when_the_dataset_is_built(corpus, monkeypatch):
    real = sf.available_subtypes
    monkeypatch.setattr(augment.sf, "available_subtypes", lambda f=None: {
        k: v for k, v in real(f).items() if k != "OPUS"})
    with pytest.raises(InputError, match="opus") as info:
        load_split(corpus, "train", NB_SAMP, augmentation=augmentation(codecs=["mp3", "opus"]))
    assert "libsndfile" in str(info.value)
    load_split(corpus, "train", NB_SAMP, augmentation=augmentation(codecs=["mp3", "opus"], codec_prob=0.0))


def test_settings_libsndfile_or_rawboost_refuse_are_input_errors_at_start_up():
    with pytest.raises(InputError, match=r"codec_compression: mp3 cannot encode at compression level 1"):
        Augmenter.from_config(augmentation(codecs=["mp3"], codec_compression=[0.5, 1.0]))
    with pytest.raises(InputError, match=r"rawboost\.maxF"):
        Augmenter.from_config(augmentation(rawboost={"maxF": 9000}))


def test_recipes_load_and_differ_from_the_published_one_only_in_augmentation(repo_root):
    published = config_to_dict(load_config(repo_root / "config" / "config.json"))
    for track, algo in (("LA", 5), ("DF", 3)):
        config = load_config(repo_root / "config" / f"AASIST_RawBoost_{track}.json")
        assert config.augmentation.rawboost_algo == algo and config.augmentation.rawboost == RawBoostParams()
        assert Augmenter.from_config(config.augmentation) is not None
        recipe = config_to_dict(config)
        assert {k: v for k, v in recipe.items() if k not in ("augmentation", "model_path")} == \
               {k: v for k, v in published.items() if k not in ("augmentation", "model_path")}


# --- TrainDataset and EvalDataset ------------------------------------------------------------------------------

def test_inactive_augmentation_builds_no_augmenter(corpus):
    for config in (None, augmentation(rawboost_algo=0, codec_prob=0.0)):
        assert load_split(corpus, "train", NB_SAMP, augmentation=config).dataset.augment is None


def test_without_augmentation_items_are_todays_crops(corpus):
    dataset = load_split(corpus, "train", NB_SAMP).dataset
    for index, crop_seed in [(0, 5), (3, 2**62 + 17), (5, 123)]:
        x, label = dataset[(index, crop_seed)]
        audio = load_audio(dataset.audio_dir / f"{dataset.entries[index].utt_id}.flac")
        np.testing.assert_array_equal(x.numpy(), random_crop(audio, NB_SAMP, np.random.default_rng(crop_seed)))
        assert label == dataset.entries[index].label


def test_augmentation_is_applied_to_the_whole_utterance_before_the_crop(corpus):
    dataset = load_split(corpus, "train", NB_SAMP, augmentation=augmentation(codec_prob=1.0)).dataset
    for index, crop_seed in [(0, 5), (3, 2**62 + 17), (5, 123)]:
        audio = load_audio(dataset.audio_dir / f"{dataset.entries[index].utt_id}.flac")
        expected = random_crop(dataset.augment(audio, crop_seed), NB_SAMP, np.random.default_rng(crop_seed))
        x = dataset[(index, crop_seed)][0].numpy()
        np.testing.assert_array_equal(x, expected)
        assert not np.allclose(x, random_crop(audio, NB_SAMP, np.random.default_rng(crop_seed)), atol=1e-3)


def test_augmented_items_depend_only_on_index_and_crop_seed(corpus):
    dataset = load_split(corpus, "train", NB_SAMP, augmentation=augmentation()).dataset
    first = [dataset[(i, 1000 + i)][0] for i in range(len(dataset))]
    again = [dataset[(i, 1000 + i)][0] for i in reversed(range(len(dataset)))][::-1]
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = dataset[(0, 999)][0]
    assert not torch.equal(other, first[0])


def first_batches(dataset: TrainDataset, num_workers: int, epoch: int) -> list[torch.Tensor]:
    sampler = TrainSampler(len(dataset), seed=7)
    sampler.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=num_workers, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    return [x for x, _ in loader]


def test_augmented_batches_are_the_same_with_any_number_of_workers(corpus):
    dataset = load_split(corpus, "train", NB_SAMP, augmentation=augmentation()).dataset
    for epoch in (0, 1):
        serial, parallel = first_batches(dataset, 0, epoch), first_batches(dataset, 2, epoch)
        assert len(serial) == len(parallel) == len(LENGTHS) // 2
        for a, b in zip(serial, parallel):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(first_batches(dataset, 0, 0)[0], first_batches(dataset, 0, 1)[0])


def test_rawboost_and_codec_draw_from_the_seed_alone_on_their_own_streams():
    x = tone(20000)
    rawboost_only = Augmenter(AugmentationConfig(rawboost_algo=5))
    np.random.seed(0)
    a = rawboost_only(x, 42)
    np.random.seed(1)  # the global generator plays no part
    np.testing.assert_array_equal(rawboost_only(x, 42), a)
    assert not np.array_equal(rawboost_only(x, 43), a)
    # Adding the codec leaves RawBoost's draws as they were (one compression level: nothing else to draw).
    with_codec = Augmenter(AugmentationConfig(rawboost_algo=5, codec_prob=1.0, codecs=["vorbis"],
                                              codec_compression=[0.5, 0.5]))
    np.testing.assert_array_equal(with_codec(x, 42), codec_round_trip(a, "vorbis", 0.5))


def test_eval_data_is_never_augmented(corpus):
    split = load_split(corpus, "dev", NB_SAMP, augmentation=augmentation(codec_prob=1.0))
    assert isinstance(split.dataset, EvalDataset) and not hasattr(split.dataset, "augment")
    for index, entry in enumerate(split.dataset.entries):
        x, utt_id = split.dataset[index]
        expected = pad_repeat(load_audio(split.dataset.audio_dir / f"{entry.utt_id}.flac"), NB_SAMP)
        np.testing.assert_array_equal(x.numpy(), expected)
