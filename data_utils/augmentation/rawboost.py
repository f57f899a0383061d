"""RawBoost data augmentation (Tak et al., "RawBoost: A Raw Data Boosting and Augmentation Method applied to
Automatic Speaker Verification Anti-Spoofing", ICASSP 2022), reimplemented from its description and checked
sample for sample against the published code (TakHemlata/RawBoost-antispoofing, ``RawBoost.py``).

Three building blocks, each a waveform-in, waveform-out function at 16 kHz:

- ``lnl_convolutive_noise``: linear and non-linear convolutive noise (the sum of ``N_f`` powers of the signal,
  each through a random multi-band notch filter), as added by channels and codecs;
- ``isd_additive_noise``: impulsive signal-dependent noise (a few percent of the samples disturbed in
  proportion to themselves), as added by clipping and quantisation;
- ``ssi_additive_noise``: stationary signal-independent coloured noise (white noise through a random notch
  filter, added at a random SNR), as added by microphones and transmission.

``rawboost(x, algo, rng)`` applies one of the published algorithm numbers:

    0 none   1 LnL   2 ISD   3 SSI   4 LnL -> ISD -> SSI   5 LnL -> ISD   6 LnL -> SSI   7 ISD -> SSI
    8 LnL and ISD in parallel on the same input, summed and renormalised

Which algorithm for which track: the strongest published systems (SSL_Anti-spoofing, ``main_SSL_LA.py`` and
``main_SSL_DF.py``) train two models on ASVspoof 2019 LA train, one with algo **5** (LnL + ISD) for
ASVspoof 2021 **LA** and one with algo **3** (SSI) for **DF**. RawBoost is applied to training data only, to
the whole utterance, before the crop/repeat-pad to ``nb_samp``; never at evaluation.

Randomness: every draw comes from the ``numpy.random.RandomState`` passed in, in the published order, so
``rawboost(x, algo, numpy.random.RandomState(s))`` equals the published code run after ``numpy.random.seed(s)``
(the same legacy MT19937 stream). The published code draws from numpy's process-global RNG instead, which
DataLoader workers of old torch versions (< 1.9) all inherit in the same state, so their augmentations repeat;
give each sample its own ``RandomState`` seeded from (seed, epoch, index) instead.

Where this differs from the published code on purpose: it runs on NumPy 2. The published code draws
``uniform(size=(1,))`` arrays and converts them with ``int()``/``float()``, which NumPy 1.25+ deprecates and
recent NumPy 2 refuses (``TypeError: only 0-dimensional arrays can be converted to Python scalars``); here
each value is drawn as a scalar, which consumes the same single number from the stream.
"""

import numpy as np
from scipy import signal

from utils.config import RAWBOOST_ALGORITHMS as ALGORITHMS, RawBoostParams
from utils.errors import InputError


# --- helpers ---------------------------------------------------------------------------------------------------

def _normalise(x: np.ndarray, always: bool) -> np.ndarray:
    """Divide by the peak magnitude: always, or only where the peak exceeds 1."""
    peak = np.amax(np.abs(x))
    return x / peak if always or peak > 1 else x


def notch_filter(rng: np.random.RandomState, p: RawBoostParams, min_gain: float, max_gain: float,
                 sr: int) -> np.ndarray:
    """A random FIR multi-band notch filter: ``nBands`` band-stop FIRs in cascade, scaled to a random gain.

    Draws, in order: per band the centre (Hz), the width (Hz) and the length (taps); then the gain (dB).

    Returns:
        b: (#taps,) float64 coefficients; the magnitude response peaks at ``gain`` dB.
    """
    b = np.ones(1)
    for _ in range(p.nBands):
        centre = rng.uniform(p.minF, p.maxF)
        width = rng.uniform(p.minBW, p.maxBW)
        taps = int(rng.uniform(p.minCoeff, p.maxCoeff))
        taps += 1 - taps % 2  # a band-stop FIR needs an odd length
        low, high = centre - width / 2, centre + width / 2
        low = low if low > 0 else 1e-3  # edges at or beyond 0 or sr/2 moved just inside, as published
        high = high if high < sr / 2 else sr / 2 - 1e-3
        b = np.convolve(signal.firwin(taps, [low, high], window="hamming", fs=sr), b)
    gain = rng.uniform(min_gain, max_gain)
    _, h = signal.freqz(b, 1, fs=sr)  # 512 points on [0, sr/2)
    return 10 ** (gain / 20) * b / np.amax(np.abs(h))


def fir_filter(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Filter ``x`` (L,) by the FIR ``b`` and shift by about half the filter's length, so that the output,
    (L,) float64, stays aligned with the input (the published ``filterFIR``'s delay compensation).

    As published: ``x`` is zero-padded by ``len(b) + 1`` samples at the end, filtered, and samples
    ``(len(b) + 1) // 2`` on are kept, ``L`` of them; so a one-tap filter returns ``b[0] * x[1:]`` and a zero.
    """
    start = (len(b) + 1) // 2
    # The sums of lfilter over the padded x, by overlap-add FFTs: equal within ~1e-13, about 2x faster.
    return signal.oaconvolve(np.pad(x, (0, len(b) + 1)), b)[start:start + len(x)]


# --- the three building blocks ----------------------------------------------------------------------------------

def lnl_convolutive_noise(x: np.ndarray, rng: np.random.RandomState, p: RawBoostParams,
                          sr: int = 16000) -> np.ndarray:
    """Linear and non-linear convolutive noise: sum over i = 1..N_f of x^i through its own random notch filter,
    then remove the mean and scale down to a peak of 1 if it exceeds 1.

    x^1 gets gains in [minG, maxG] dB, every higher power gains in [minG - minBiasLinNonLin,
    maxG - maxBiasLinNonLin] dB (with the defaults a reversed range, from -5 down to -20 dB: it is drawn as
    uniform(-5, -20), as published). Draws ``N_f`` notch filters.

    Args:
        x: (L,) waveform in [-1, 1]; sr: sample rate, Hz.
    Returns:
        (L,) float64.
    """
    y = np.zeros(len(x))
    x64, power = np.asarray(x, dtype=np.float64), np.ones(len(x))
    for i in range(p.N_f):
        bias_min, bias_max = (0, 0) if i == 0 else (p.minBiasLinNonLin, p.maxBiasLinNonLin)
        b = notch_filter(rng, p, p.minG - bias_min, p.maxG - bias_max, sr)
        # x^(i+1) by products in float64, rounded to x's dtype: about 20x faster than np.power in float32,
        # and within float32 rounding of it.
        power = power * x64
        y = y + fir_filter(power.astype(x.dtype), b)
    y = y - np.mean(y)
    return _normalise(y, always=False)


def isd_additive_noise(x: np.ndarray, rng: np.random.RandomState, p: RawBoostParams) -> np.ndarray:
    """Impulsive signal-dependent noise: a random ``beta`` in [0, P) percent of the samples, at random
    positions, become x + g_sd * x * f with f the product of two uniforms in [-1, 1]; then scale down to a
    peak of 1 if it exceeds 1.

    Draws, in order: beta, a permutation of the positions, the first factors, the second factors.

    Args:
        x: (L,) waveform.
    Returns:
        (L,) of x's dtype.
    """
    beta = rng.uniform(0, p.P)
    n = int(len(x) * (beta / 100))
    positions = rng.permutation(len(x))[:n]
    first = 2 * rng.rand(n) - 1
    second = 2 * rng.rand(n) - 1
    y = x.copy()
    y[positions] = x[positions] + p.g_sd * x[positions] * (first * second)
    return _normalise(y, always=False)


def ssi_additive_noise(x: np.ndarray, rng: np.random.RandomState, p: RawBoostParams,
                       sr: int = 16000) -> np.ndarray:
    """Stationary signal-independent additive noise: white Gaussian noise through a random notch filter
    (gains in [minG, maxG] dB), added at a random SNR in [SNRmin, SNRmax] dB. No normalisation afterwards:
    the output may exceed 1, as published.

    Draws, in order: the noise (L normals), one notch filter, the SNR.

    Args:
        x: (L,) waveform; sr: sample rate, Hz.
    Returns:
        (L,) float64.
    """
    noise = rng.normal(0, 1, len(x))
    b = notch_filter(rng, p, p.minG, p.maxG, sr)
    noise = _normalise(fir_filter(noise, b), always=True)
    snr = rng.uniform(p.SNRmin, p.SNRmax)
    noise = noise / np.linalg.norm(noise, 2) * np.linalg.norm(x, 2) / 10.0 ** (0.05 * snr)
    return x + noise


# --- the published algorithms ------------------------------------------------------------------------------------

def rawboost(x: np.ndarray, algo: int, rng: np.random.RandomState, sr: int = 16000,
             params: RawBoostParams | None = None, **overrides) -> np.ndarray:
    """Apply RawBoost algorithm ``algo`` (0-8, see the module docstring) to one waveform.

    Args:
        x: (L,) float32 waveform in [-1, 1] (a whole utterance, before any crop).
        algo: 0 (no change) to 8.
        rng: the legacy ``numpy.random.RandomState`` every random value is drawn from.
        sr: sample rate, Hz; the filters' frequencies (``maxF`` at most sr/2) are in Hz.
        params: the parameters, already validated (a loader passes its own for every utterance).
        **overrides: without ``params``, ``RawBoostParams`` fields overriding the published defaults.
    Returns:
        (L,) float32.
    """
    if algo not in ALGORITHMS:
        raise InputError(f"unknown RawBoost algo {algo!r}; valid: "
                         + ", ".join(f"{k} ({v})" for k, v in ALGORITHMS.items()))
    if not isinstance(rng, np.random.RandomState):
        raise TypeError(f"rng must be a numpy.random.RandomState (the published legacy stream), "
                        f"got {type(rng).__name__}")
    if params is not None and overrides:
        raise TypeError("give either params or keyword overrides, not both")
    p = params if params is not None else RawBoostParams.from_dict(overrides)
    if p.maxF > sr / 2:
        raise InputError(f"rawboost.maxF must be at most half the sample rate ({sr / 2:g} Hz), got {p.maxF!r}")
    x = np.asarray(x)
    if x.ndim != 1 or len(x) == 0:
        raise InputError(f"RawBoost takes one non-empty waveform of shape (L,), got shape {x.shape}")

    # Stages keep the published dtypes in between (float64 after LnL/SSI), so results match it; cast at the end.
    if algo == 0:
        y = x
    elif algo == 1:
        y = lnl_convolutive_noise(x, rng, p, sr)
    elif algo == 2:
        y = isd_additive_noise(x, rng, p)
    elif algo == 3:
        y = ssi_additive_noise(x, rng, p, sr)
    elif algo == 4:
        y = ssi_additive_noise(isd_additive_noise(lnl_convolutive_noise(x, rng, p, sr), rng, p), rng, p, sr)
    elif algo == 5:
        y = isd_additive_noise(lnl_convolutive_noise(x, rng, p, sr), rng, p)
    elif algo == 6:
        y = ssi_additive_noise(lnl_convolutive_noise(x, rng, p, sr), rng, p, sr)
    elif algo == 7:
        y = ssi_additive_noise(isd_additive_noise(x, rng, p), rng, p, sr)
    else:  # 8: both on the original x, LnL drawing first
        convolutive = lnl_convolutive_noise(x, rng, p, sr)
        y = _normalise(convolutive + isd_additive_noise(x, rng, p), always=False)
    return np.array(y, dtype=np.float32)
