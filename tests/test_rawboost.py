"""RawBoost (data_utils/augmentation/rawboost.py) equals the published code (CORPORA_SPEC.md, section D)."""
import dataclasses
import json
import re
import warnings

import numpy as np
import pytest

from scipy import signal

from data_utils.augmentation.rawboost import RawBoostParams, fir_filter, rawboost
from utils.errors import InputError

ALGOS = range(1, 9)
SEEDS = (0, 7)


@pytest.fixture(scope="module")
def golden(reference_dir):
    with np.load(reference_dir / "rawboost_golden.npz") as npz:
        return dict(npz)


def test_defaults_are_the_published_ones(golden):
    assert RawBoostParams().to_dict() == json.loads(str(golden["defaults_json"]))


@pytest.mark.parametrize("algo", ALGOS)
def test_equals_published_code(golden, algo):
    """Every clip and seed, with ``numpy.random.seed(s)`` in the reference and ``RandomState(s)`` here."""
    assert list(golden["algos"]) == list(ALGOS) and tuple(golden["seeds"]) == SEEDS
    for k in range(len(golden["clip_names"])):
        x = golden[f"clip_{k}"]
        for seed in SEEDS:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # NumPy's array-to-scalar deprecation, among others
                y = rawboost(x, algo, np.random.RandomState(seed))
            assert y.dtype == np.float32 and y.shape == x.shape
            np.testing.assert_allclose(y, golden[f"out_{k}_{algo}_{seed}"], rtol=0, atol=1e-6,
                                       err_msg=f"clip {k}, algo {algo}, seed {seed}")


def published_filter_fir(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The published ``filterFIR`` as the RawBoost paper's code writes it: pad by len(b) + 1 zeros, lfilter,
    keep samples [N/2, len - N/2) with N = len(b) + 1."""
    n = len(b) + 1
    y = signal.lfilter(b, 1, np.concatenate([x, np.zeros(n)]))
    return y[int(n / 2):int(y.shape[0] - n / 2)]


@pytest.mark.parametrize("length, taps", [(2000, 1), (2000, 3), (2000, 5), (2000, 7), (2000, 99), (2000, 101),
                                           (1, 1), (1, 3), (10, 101)])
def test_fir_filter_equals_the_published_filter_at_every_length(length, taps):
    rng = np.random.RandomState(taps)
    x, b = rng.uniform(-1, 1, length), rng.normal(0, 1, taps)
    y = fir_filter(x, b)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, published_filter_fir(x, b), rtol=0, atol=1e-12)


@pytest.mark.parametrize("algo", ALGOS)
def test_one_tap_notch_filters_keep_the_length(algo):
    """nBands 1 with minCoeff 1, maxCoeff 2 (valid settings) draws one-tap filters; the published filterFIR
    then returns b[0] * x[1:] and a zero: as many samples as it was given."""
    x = np.random.RandomState(1).uniform(-0.5, 0.5, 3000).astype(np.float32)
    y = rawboost(x, algo, np.random.RandomState(0), nBands=1, minCoeff=1, maxCoeff=2)
    assert y.shape == x.shape and y.dtype == np.float32 and np.all(np.isfinite(y))


def test_one_tap_lnl_is_the_published_shift():
    # One power (N_f 1) through a one-tap filter of gain 0 dB (b = [1]): the published LnL is x moved one
    # sample earlier with a zero at the end, less its mean (its peak stays below 1: no scaling).
    x = np.random.RandomState(2).uniform(-0.5, 0.5, 3000).astype(np.float32)
    y = rawboost(x, 1, np.random.RandomState(0), nBands=1, minCoeff=1, maxCoeff=2, N_f=1)
    shifted = np.concatenate([x[1:], [0.0]]).astype(np.float64)
    np.testing.assert_allclose(y, shifted - shifted.mean(), rtol=0, atol=1e-6)


def test_the_readme_states_the_measured_bound(golden, repo_root):
    """The README's figure is the largest difference from the published outputs, to two digits."""
    worst = max(np.abs(rawboost(golden[f"clip_{k}"], algo, np.random.RandomState(seed)).astype(np.float64)
                       - golden[f"out_{k}_{algo}_{seed}"]).max()
                for algo in ALGOS for k in range(len(golden["clip_names"])) for seed in SEEDS)
    stated = re.search(r"RawBoost outputs equal the published code's within ([0-9.e-]+)",
                       (repo_root / "README.md").read_text())
    assert stated is not None and float(stated.group(1)) == float(f"{worst:.1e}")


def test_algo_0_is_no_change():
    x = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)
    y = rawboost(x, 0, np.random.RandomState(0))
    assert y.dtype == np.float32 and np.array_equal(y, x) and y is not x


def test_same_seed_same_output_and_params_apply():
    x = np.random.RandomState(1).uniform(-0.5, 0.5, 4000).astype(np.float32)
    first = rawboost(x, 4, np.random.RandomState(3))
    assert np.array_equal(first, rawboost(x, 4, np.random.RandomState(3)))
    assert not np.array_equal(first, rawboost(x, 4, np.random.RandomState(4)))
    # P = 0 disturbs no sample: ISD on a signal within [-1, 1] returns it unchanged
    assert np.array_equal(rawboost(x, 2, np.random.RandomState(3), P=0), x)


def test_params_round_trip_from_dict():
    custom = dataclasses.replace(RawBoostParams(), N_f=3, SNRmin=5.5, maxG=-1)
    assert RawBoostParams.from_dict(custom.to_dict()) == custom
    assert RawBoostParams.from_dict({}) == RawBoostParams()
    assert RawBoostParams.from_dict({"P": 5}).P == 5


def test_unknown_params_are_named():
    with pytest.raises(InputError, match="SNRmaxx") as e:
        RawBoostParams.from_dict({"SNRmaxx": 30, "P": 5})
    assert "SNRmax" in str(e.value)  # the valid names are listed
    with pytest.raises(InputError, match="nbands"):
        rawboost(np.zeros(100, np.float32), 1, np.random.RandomState(0), nbands=3)


@pytest.mark.parametrize("raw, key", [({"N_f": 2.5}, "N_f"), ({"g_sd": True}, "g_sd"),
                                      ({"minF": "20"}, "minF"), ({"P": 150}, "P"),
                                      ({"SNRmin": 50}, "SNRmin"), ({"nBands": 0}, "nBands")])
def test_bad_param_values_are_named(raw, key):
    with pytest.raises(InputError, match=f"rawboost.{key}"):
        RawBoostParams.from_dict(raw)


def test_bad_param_values_are_named_when_built_in_python():
    with pytest.raises(InputError, match="rawboost.maxG must be a finite number, got nan"):
        RawBoostParams(maxG=float("nan"))
    with pytest.raises(InputError, match="rawboost.N_f must be int, got 2.5"):
        dataclasses.replace(RawBoostParams(), N_f=2.5)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RawBoostParams().P = 1


@pytest.mark.parametrize("algo", [9, -1])
def test_unknown_algo_is_named(algo):
    with pytest.raises(InputError, match=f"algo {algo}"):
        rawboost(np.zeros(100, np.float32), algo, np.random.RandomState(0))


def test_bad_inputs():
    x = np.zeros(100, np.float32)
    with pytest.raises(TypeError, match="RandomState"):
        rawboost(x, 1, np.random.default_rng(0))
    with pytest.raises(InputError, match=r"shape \(2, 50\)"):
        rawboost(x.reshape(2, 50), 1, np.random.RandomState(0))
    with pytest.raises(InputError, match="maxF"):
        rawboost(x, 1, np.random.RandomState(0), sr=8000)
