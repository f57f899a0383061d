"""models.inference and models.loading: reading any audio, the windows, scores equal to the published
evaluation's, and no NaN passing for a score (NaN weights refused, NaN logits reported)."""
import json
import math
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import firwin, resample_poly

from data_utils import load_audio, pad_repeat
from models import AASIST, load_model, load_state_dict, score
from models.inference import read_any_audio, score_stream, window_starts
from models.loading import load_weights_into
from utils.errors import InputError

SR = 16000


@pytest.fixture(scope="module")
def aasist_l(repo_root, reference_dir):
    return load_model(repo_root / "config" / "AASIST-L.json", reference_dir / "weights" / "AASIST-L.pth", "cpu")


def tone(seconds: float, sample_rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return 0.5 * np.sin(2 * np.pi * freq * t)


@pytest.mark.parametrize("sample_rate", [8000, 22050, 44100, 48000])
def test_read_any_rate_resamples_to_16k(tmp_path, sample_rate):
    path = tmp_path / f"tone_{sample_rate}.wav"
    sf.write(path, tone(0.5, sample_rate), sample_rate, subtype="FLOAT")
    x = read_any_audio(path)
    assert x.dtype == np.float32 and x.shape == (math.ceil(0.5 * sample_rate * SR / sample_rate),)
    middle = slice(800, -800)  # away from the resampling filter's edge effects
    np.testing.assert_allclose(x[middle], tone(0.5, SR)[middle], atol=2e-3)


def test_read_16k_is_load_audio_and_stereo_is_averaged(tmp_path, la_tiny):
    path = la_tiny / "LA_E_2000017.flac"
    np.testing.assert_array_equal(read_any_audio(path), load_audio(path))
    left, right = tone(0.25, 44100, 300.0), tone(0.25, 44100, 1000.0)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    sf.write(tmp_path / "mono.wav", (left + right) / 2, 44100, subtype="FLOAT")
    np.testing.assert_allclose(read_any_audio(tmp_path / "stereo.wav"), read_any_audio(tmp_path / "mono.wav"),
                               atol=1e-7)


def make_bad_file(tmp_path, case: str):
    path = tmp_path / {"empty": "empty.wav", "text": "notes.wav", "corrupt": "cut.flac",
                       "no_samples": "silent.wav", "missing": "absent.flac", "folder": "folder.wav"}[case]
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("not audio\n")
    elif case == "corrupt":
        sf.write(tmp_path / "whole.flac", tone(1.0, SR), SR)
        path.write_bytes((tmp_path / "whole.flac").read_bytes()[:200])  # cut inside the first frame
    elif case == "no_samples":
        sf.write(path, np.zeros(0), SR)
    elif case == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize("case, reason", [
    ("missing", "audio file not found"),
    ("empty", "is empty (0 bytes)"),
    ("text", "not audio in a format soundfile reads, or corrupt (Format not recognised"),
    ("corrupt", "not audio in a format soundfile reads, or corrupt"),
    ("no_samples", "has no samples"),
    ("folder", "is a directory"),
])
def test_unreadable_file_message_names_file_and_reason(tmp_path, case, reason):
    path = make_bad_file(tmp_path, case)
    with pytest.raises(InputError) as info:
        read_any_audio(path)
    assert str(path) in str(info.value) and reason in str(info.value)


@pytest.mark.parametrize("num_samples, expected", [
    (100, [0]),                       # shorter: one repeat-padded window
    (1000, [0]),                      # exactly one window
    (1001, [0, 1]),                   # the tail gets a window ending at the last sample
    (2000, [0, 500, 1000]),           # hop 500 lands on the end
    (2300, [0, 500, 1000, 1300]),
])
def test_window_starts(num_samples, expected):
    assert window_starts(num_samples, nb_samp=1000, hop=500).tolist() == expected


def test_score_equals_published_evaluation(reference_dir, repo_root, la_tiny):
    """Default scoring = evaluate.py's: the first nb_samp samples (here the cut path: 64601 samples)."""
    model = load_model(repo_root / "config" / "config.json", reference_dir / "weights" / "AASIST.pth", "cpu")
    published = json.loads((reference_dir / "LA_tiny_scores.json").read_text())["LA_E_2000051"]
    result = score(model, la_tiny / "LA_E_2000051.flac")
    assert result.score == pytest.approx(published, abs=1e-4)
    assert result.duration == 64601 / SR and result.num_windows == 1 and result.window_mean is None


def test_segments_score_every_window(aasist_l, la_tiny):
    """Short windows (nb_samp 4000) keep this fast."""
    x = load_audio(la_tiny / "LA_E_2000068.flac")[:10000]
    result = score(aasist_l, x, segments=True, nb_samp=4000, hop=2000)
    starts = [0, 2000, 4000, 6000]
    with torch.no_grad():
        _, logits = aasist_l(torch.from_numpy(np.stack([x[s:s + 4000] for s in starts])))
    expected = logits[:, 1].numpy()
    assert result.num_windows == 4
    np.testing.assert_allclose([result.score, result.window_mean, result.window_min],
                               [expected[0], expected.mean(), expected.min()], atol=1e-5)
    assert result.window_min_start == starts[int(np.argmin(expected))] / SR
    assert score(aasist_l, x, nb_samp=4000).score == pytest.approx(result.score, abs=1e-5)


def test_score_stream_keeps_order_and_passes_errors(aasist_l):
    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (3000, 9000, 5000)]
    failed = InputError("cannot read b.wav")
    items = [("a", waves[0]), ("b", failed), ("c", waves[1]), ("d", waves[2])]
    results = list(score_stream(aasist_l, items, nb_samp=4000, batch_size=2))  # a batch spans a and c
    assert [key for key, _ in results] == ["a", "b", "c", "d"] and results[1][1] is failed
    with torch.no_grad():
        _, logits = aasist_l(torch.from_numpy(np.stack([pad_repeat(w, 4000) for w in waves])))
    scored = [results[i][1] for i in (0, 2, 3)]
    np.testing.assert_allclose([r.score for r in scored], logits[:, 1].numpy(), atol=1e-5)
    np.testing.assert_allclose([r.bonafide_prob for r in scored], torch.softmax(logits, 1)[:, 1].numpy(), rtol=1e-4)


@pytest.mark.parametrize("audio, kwargs, message", [
    (np.zeros((2, 16000), np.float32), {}, "expected a mono (samples,) waveform"),
    (np.zeros(16000, np.int16), {}, "expected float samples in [-1, 1], got int16"),
    (np.full(16000, np.nan, np.float32), {}, "NaN or infinite"),
    (np.zeros(0, np.float32), {}, "no samples"),
    (np.zeros(16000, np.float32), {"sample_rate": 0}, "sample rate must be positive"),
    ("some.wav", {"sample_rate": 16000}, "sample_rate is for waveform arrays"),
])
def test_score_input_errors(aasist_l, audio, kwargs, message):
    with pytest.raises(InputError) as info:
        score(aasist_l, audio, **kwargs)
    assert message in str(info.value)


def test_tensor_at_48k_is_resampled(aasist_l, la_tiny):
    """sample_rate is honoured: a 48 kHz copy (steep low-pass up) scores like the 16 kHz original."""
    x = load_audio(la_tiny / "LA_E_2000085.flac")[:8000].astype(np.float64)
    taps = firwin(2 * 64 * 3 + 1, 1 / 3, window=("kaiser", 8.0))
    x48 = torch.from_numpy(resample_poly(x, 3, 1, window=taps))
    result = score(aasist_l, x48, sample_rate=48000, nb_samp=4000)
    assert result.duration == 0.5
    # Measured 0.0013 (scipy's default low-pass: 0.045; sample_rate ignored: 0.66).
    assert abs(result.score - score(aasist_l, x.astype(np.float32), nb_samp=4000).score) < 0.005


@pytest.fixture(scope="module")
def lite_config(repo_root) -> dict:
    return json.loads((repo_root / "config" / "AASIST-L.json").read_text())["model_config"]


def test_weights_with_nan_or_inf_are_refused(lite_config, tmp_path):
    """A diverged run's weights would score every file NaN, and NaN > threshold is False: "spoof"."""
    state_dict = {k: v.clone() for k, v in AASIST(lite_config).state_dict().items()}  # random: no reference needed
    bad = [k for k, v in state_dict.items() if v.is_floating_point()][:10]  # more than the message lists
    for i, name in enumerate(bad):
        state_dict[name].view(-1)[-1] = math.nan if i % 2 else -math.inf
    path = tmp_path / "diverged.pth"
    torch.save(state_dict, path)
    with pytest.raises(InputError) as info:
        load_state_dict(path)
    assert str(info.value).startswith(f"refusing to load {path}: 10 tensor(s) hold NaN or infinite values "
                                      f"({', '.join(bad[:8])} ...)")

    # A state dict made in a notebook gets the same check on its way into the model.
    state_dict = {k: v.clone() for k, v in AASIST(lite_config).state_dict().items()}
    state_dict["out_layer.weight"][0, 0] = math.inf
    model = AASIST(lite_config)
    with pytest.raises(InputError, match=r"^refusing to load my weights: 1 tensor\(s\) hold NaN or infinite "
                                         r"values \(out_layer.weight\)"):
        load_weights_into(model, state_dict, source="my weights")
    assert torch.isfinite(model.out_layer.weight).all()  # left as it was


@pytest.mark.parametrize("write, message", [
    (lambda p: p.write_text("hello\n"), "not a PyTorch file"),
    (lambda p: p.write_text("https://example.org/AASIST.pth\n"), "not a PyTorch file"),  # a saved link
    (lambda p: p.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 30), "not a PyTorch file"),
    (lambda p: torch.save({"model": {7: torch.zeros(2)}}, p), r"keys are parameter names, got the key '7' \(int\)"),
    (lambda p: torch.save({"w": torch.zeros(3).to_sparse()}, p), "w is a torch.sparse_coo tensor"),
    (lambda p: torch.save({"w": [1.0]}, p), "w is a list, not a tensor"),
    (lambda p: torch.save({"w": torch.zeros(2)}, p, pickle_protocol=4), "opcode 149"),
], ids=["text", "url", "passwd", "int_key", "sparse", "list", "protocol4"])
def test_a_file_that_is_not_weights_is_named(tmp_path, write, message):
    path = tmp_path / "weights.pth"
    write(path)
    with pytest.raises(InputError, match=message) as info:
        load_state_dict(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("sample_rate", [16000, 8000, 44100, 48000])
def test_scoring_reads_only_the_samples_it_scores(tmp_path, sample_rate):
    """A 10-minute file: read whole (float64, 2-D), it took 525 MB; only nb_samp samples are scored."""
    from models.inference import Audio, read_files
    path = tmp_path / "long.wav"
    seconds = 600 if sample_rate == 16000 else 30
    rng = np.random.default_rng(0)
    sf.write(path, 0.1 * rng.standard_normal((seconds * sample_rate, 2)), sample_rate, subtype="PCM_16")
    tracemalloc.start()
    try:
        [(_, head)] = list(read_files([path], 64600))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(head, Audio) and head.duration == seconds
    assert peak < 8e6  # bytes; the whole 10-minute file as float64 stereo alone is 154 MB
    np.testing.assert_array_equal(head.samples, read_any_audio(path)[:64600])  # the filter saw the same input


class NaNLogits(torch.nn.Module):
    """A model whose logits are NaN, as an overflow would make them from finite weights."""

    nb_samp = 4000

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))  # score_stream finds the device from a parameter

    def forward(self, x: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, torch.full((x.shape[0], 2), math.nan)


def test_nan_logits_are_an_error_not_a_score():
    x = np.zeros(4000, np.float32)
    with pytest.raises(InputError, match="AASIST gave NaN or infinite logits for the waveform"):
        score(NaNLogits(), x)
    [(key, result)] = score_stream(NaNLogits(), [("speech.wav", x)])
    assert key == "speech.wav" and isinstance(result, InputError) and "logits for speech.wav" in str(result)
