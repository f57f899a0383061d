"""A small synthetic corpus in the ASVspoof 2019 LA layout, to run the whole pipeline without the real data.

    from data_utils.demo import write_demo_corpus
    write_demo_corpus(Path("demo_data/LA"), seed=0, scale=1.0)   # what scripts/make_demo_data.py runs

Bona fide speech is a source-filter model of a talker: a glottal pulse train with jittered, drifting f0 and
breathy noise, through time-varying formant resonators, in syllables of vowels, fricatives, plosives and
nasals; each speaker has their own f0, vocal-tract length, jitter and breathiness. A spoof is the same kind
of utterance resynthesised by a vocoder: every spoof's harmonics are somewhat smeared into the spectral
envelope (an artefact all attacks share, as real vocoders do), then it gets its attack's own artefact:

    A01  high band (above 1.5-3 kHz) resynthesised from a coarse envelope with noise: harmonics lost there
    A02  phase rebuilt by 1-4 Griffin-Lim iterations (phasiness, smeared onsets)
    A03  LPC-style synthesis: impulse excitation, no jitter, shimmer or breath noise, f0 and filter held per frame
    A04  codec-like spectral quantisation: log magnitudes rounded to 6-10 dB, weak bins zeroed (musical noise)
    A05  4-6 bit mu-law waveform quantisation
    A06  statistical-parametric over-smoothing: harmonics nearly flattened into the envelope
    A07  (eval only, unseen) 2x upsampler with a weak interpolation filter: spectral images above 4 kHz
    A17  (eval only, unseen) magnitudes smoothed over 5-9 frames and a frame-rate amplitude ripple
    A16, A19  (eval) the A04 and A06 artefacts under new ids, as in the real corpus (A16 = A04, A19 = A06)

Every utterance, bona fide or spoof, then goes through the same random microphone tilt and noise floor and is
scaled to a random RMS level drawn from one distribution, so neither level nor length gives the class away.
Utterances last 0.5-1.6 s, some shorter and some longer than the 12000 samples of ``config/demo.json``.
Train, dev and eval have different speakers. ASV scores are synthetic too (targets high, non-targets low,
each attack in between), enough for a meaningful min t-DCF.
The same seed writes byte-identical files.
"""
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
from scipy.ndimage import uniform_filter1d
from scipy.signal import lfilter

from data_utils.dataset import SAMPLE_RATE, audio_path, split_paths

__all__ = ["write_demo_corpus"]

FS = SAMPLE_RATE
HOP = 128  # samples (8 ms): frame rate of the control tracks and of the time-varying filters
FILTER_FFT = 1024  # long enough that a 40 Hz-wide resonance has decayed by -50 dB before it wraps around
STFT_FFT = 512  # analysis frame of the artefacts (32 ms, Hann, hop HOP)
STFT_WINDOW = np.hanning(STFT_FFT + 1)[:STFT_FFT]  # periodic Hann
MIN_SECONDS, MAX_SECONDS = 0.5, 1.6

# (F1, F2, F3) of an adult male talker, Hz; F4 and F5 are fixed below.
VOWELS = np.array([
    [270, 2290, 3010], [390, 1990, 2550], [530, 1840, 2480], [660, 1720, 2410], [730, 1090, 2440],
    [570, 840, 2410], [440, 1020, 2240], [300, 870, 2240], [490, 1350, 1690], [520, 1190, 2390],
], dtype=np.float64)
VOWEL_BANDWIDTHS = np.array([60.0, 90.0, 120.0, 180.0, 250.0])
NASAL_FORMANTS = np.array([250.0, 1100.0, 2300.0, 3300.0, 4300.0])
NASAL_BANDWIDTHS = np.array([100.0, 200.0, 250.0, 300.0, 400.0])
FRICATIVES = {"s": (5500.0, 2000.0), "sh": (3000.0, 1200.0), "f": (4500.0, 6000.0), "burst": (2500.0, 2500.0)}


@dataclass(frozen=True)
class SplitPlan:
    """How many utterances of each source one split holds (before ``scale``), and by whom."""

    prefix: str  # utterance ids are LA_<prefix>_<7 digits>
    speakers: tuple[str, ...]
    counts: dict[str, int]  # SOURCE ('-' for bona fide, else the attack id) -> utterances


# The real corpus's proportions, roughly: one bona fide utterance in five to eight, train/dev share A01-A06,
# eval has unseen attacks and two known artefacts under new ids (there A16 = A04, A19 = A06).
PLANS = {
    "train": SplitPlan("T", tuple(f"LA_{n:04d}" for n in range(79, 87)),
                       {"-": 80, "A01": 60, "A02": 60, "A03": 60, "A04": 60, "A05": 60, "A06": 60}),
    "dev": SplitPlan("D", tuple(f"LA_{n:04d}" for n in range(69, 75)),
                     {"-": 40, "A01": 30, "A02": 30, "A03": 30, "A04": 30, "A05": 30, "A06": 30}),
    "eval": SplitPlan("E", tuple(f"LA_{n:04d}" for n in range(1, 9)),
                      {"-": 60, "A07": 60, "A16": 60, "A17": 60, "A19": 60}),
}


# --- bona fide speech: a source-filter talker -----------------------------------------------------


@dataclass(frozen=True)
class Speaker:
    """A talker's voice."""

    f0: float  # median fundamental frequency, Hz
    formant_scale: float  # formants are the male table times this (shorter vocal tract: higher)
    jitter: float  # relative s.d. of successive glottal periods
    shimmer: float  # relative s.d. of successive pulse amplitudes
    breathiness: float  # aspiration noise relative to the pulses


@dataclass
class Tracks:
    """Frame-rate controls of one utterance: row ``f`` holds the values at sample ``f * HOP``."""

    f0: np.ndarray  # (F,) Hz
    voicing: np.ndarray  # (F,) amplitude of the glottal excitation
    frication: np.ndarray  # (F,) amplitude of the turbulence noise
    formants: np.ndarray  # (F, 5) Hz
    bandwidths: np.ndarray  # (F, 5) Hz
    fric_shape: np.ndarray  # (F, 2) centre and bandwidth of the frication resonance, Hz


def make_speaker(rng: np.random.Generator) -> Speaker:
    """A random adult talker; about half have a low (male-like) voice."""
    low = rng.random() < 0.5
    return Speaker(
        f0=rng.uniform(95, 140) if low else rng.uniform(170, 240),
        formant_scale=rng.uniform(0.9, 1.02) if low else rng.uniform(1.08, 1.2),
        jitter=rng.uniform(0.006, 0.015),
        shimmer=rng.uniform(0.03, 0.08),
        breathiness=rng.uniform(0.04, 0.12),
    )


def _segments(num_frames: int, rng: np.random.Generator) -> list[tuple[str, int, dict]]:
    """A random sequence of (kind, frames, targets) that fills ``num_frames`` frames: syllables and pauses."""
    frames = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731 (durations in 8 ms frames)
    segs = [("silence", frames(6, 30), {})]
    used = segs[0][1]
    while used < num_frames:
        onset = rng.choice(["none", "fricative", "plosive", "nasal"], p=[0.25, 0.3, 0.25, 0.2])
        if onset == "fricative":
            segs.append(("fricative", frames(6, 15), {"shape": FRICATIVES[rng.choice(["s", "sh", "f"])],
                                                      "voiced": rng.random() < 0.3}))
        elif onset == "plosive":
            segs += [("silence", frames(3, 7), {}), ("fricative", frames(1, 3), {"shape": FRICATIVES["burst"],
                                                                                 "voiced": False})]
        elif onset == "nasal":
            segs.append(("nasal", frames(5, 10), {}))
        segs.append(("vowel", frames(10, 30), {"vowel": VOWELS[rng.integers(len(VOWELS))],
                                               "stress": rng.uniform(0.9, 1.15)}))
        if rng.random() < 0.25:
            segs.append(("silence", frames(8, 25), {}))
        used = sum(s[1] for s in segs)
    return segs


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average of ``width`` along axis 0 (coarticulation, gradual onsets), edges held."""
    return uniform_filter1d(x, width, axis=0, mode="nearest") if width > 1 else x


def plan_utterance(num_samples: int, speaker: Speaker, rng: np.random.Generator) -> Tracks:
    """Control tracks of a random utterance of ``num_samples`` samples by ``speaker``."""
    num_frames = num_samples // HOP + 2
    formants = np.zeros((num_frames, 5))
    bandwidths = np.tile(VOWEL_BANDWIDTHS, (num_frames, 1))
    voicing, frication, stress = np.zeros(num_frames), np.zeros(num_frames), np.ones(num_frames)
    fric_shape = np.tile(FRICATIVES["s"], (num_frames, 1))
    vowel = VOWELS[rng.integers(len(VOWELS))]
    start = 0
    for kind, length, targets in _segments(num_frames, rng):
        seg = slice(start, min(start + length, num_frames))
        n = seg.stop - seg.start
        if kind == "vowel":
            vowel = targets["vowel"] * rng.uniform(0.95, 1.05, size=3)
            voicing[seg] = np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 0.5  # a syllable's rise and fall
            stress[seg] = targets["stress"]
        elif kind == "nasal":
            voicing[seg] = 0.35
            bandwidths[seg] = NASAL_BANDWIDTHS
        elif kind == "fricative":
            frication[seg] = rng.uniform(0.25, 0.5)
            voicing[seg] = 0.25 if targets["voiced"] else 0.0
            fric_shape[seg] = targets["shape"]
        # Other consonants keep the last vowel's formants; the smoothing below makes the glides.
        formants[seg, :3] = NASAL_FORMANTS[:3] if kind == "nasal" else vowel
        start = seg.stop
        if start >= num_frames:
            break
    formants[:, 3:] = [3500.0, 4500.0]
    formants = _smooth(formants, 7) * speaker.formant_scale * rng.uniform(0.97, 1.03)
    bandwidths = _smooth(bandwidths, 3) * rng.uniform(0.85, 1.2)
    # f0: declination over the utterance, a slow random drift, and a rise on stressed vowels.
    drift = _smooth(np.cumsum(rng.normal(0, 0.015, num_frames)), 15)
    f0 = speaker.f0 * np.linspace(1.08, 0.92, num_frames) * np.exp(drift - drift.mean()) * _smooth(stress, 9)
    return Tracks(f0, _smooth(voicing, 3), _smooth(frication, 2), formants, bandwidths, fric_shape)


def _frame_to_samples(track: np.ndarray, num_samples: int) -> np.ndarray:
    """Linear interpolation of a frame-rate track to the sample rate."""
    return np.interp(np.arange(num_samples), np.arange(track.shape[0]) * HOP, track)


def glottal_pulses(f0: np.ndarray, jitter: float, shimmer: float, rng: np.random.Generator,
                   impulses: bool = False) -> np.ndarray:
    """A train of glottal flow-derivative pulses (Rosenberg shape) following the per-sample ``f0`` (Hz).

    Each period is perturbed by ``jitter`` and each pulse's amplitude by ``shimmer`` (relative s.d.).
    The flow derivative already includes the lips' +6 dB/octave radiation. With ``impulses``, each pulse
    is a unit impulse through a one-pole low-pass instead: an LPC vocoder's excitation, with about the
    same spectral tilt but none of the glottal pulse's shape.
    """
    n = f0.shape[0]
    out = np.zeros(n + 2 * FS // 50)
    t = float(rng.uniform(0, FS / f0[0]))
    while t < n:
        period = FS / f0[int(t)] * (1.0 + jitter * rng.standard_normal())
        opening, closing = int(0.4 * period), max(int(0.16 * period), 2)
        flow = np.concatenate([0.5 - 0.5 * np.cos(np.pi * np.arange(opening) / opening),
                               np.cos(0.5 * np.pi * np.arange(closing + 1) / closing)])
        pulse = np.diff(flow) * (1.0 + shimmer * rng.standard_normal())
        start = int(t)
        if impulses:
            out[start] += 1.0
        else:
            out[start:start + pulse.shape[0]] += pulse
        t += period
    return lfilter([1.0], [1.0, -0.9], out[:n]) if impulses else out[:n]


def resonator_response(freqs: np.ndarray, bandwidths: np.ndarray, n_fft: int) -> np.ndarray:
    """Frequency response of a cascade of two-pole resonators, unit gain at 0 Hz.

    Args:
        freqs, bandwidths: (F, K) centre frequencies and -3 dB bandwidths, Hz.

    Returns:
        (F, n_fft // 2 + 1) complex response on the rfft grid.
    """
    z1 = np.exp(-2j * np.pi * np.arange(n_fft // 2 + 1) / n_fft)  # (B,)
    r = np.exp(-np.pi * bandwidths / FS)[..., None]  # (F, K, 1)
    c = 2 * r * np.cos(2 * np.pi * freqs / FS)[..., None]
    return np.prod((1 - c + r**2) / (1 - c * z1 + r**2 * z1**2), axis=1)


def filter_by_frames(x: np.ndarray, response: np.ndarray, crossfade: bool = True) -> np.ndarray:
    """Filter ``x`` with a filter that changes every HOP samples: frame ``f`` of ``response`` applies at ``f * HOP``.

    With ``crossfade`` the input is cut into Hann windows of 2 * HOP that overlap by half (so consecutive
    filters blend); without it, into rectangular blocks of HOP, so the filter jumps at frame boundaries.

    Args:
        x: (N,) input.
        response: (N // HOP + 2, FILTER_FFT // 2 + 1) complex.

    Returns:
        (N,) output.
    """
    n, num_frames = x.shape[0], response.shape[0]
    width = 2 * HOP if crossfade else HOP
    window = np.hanning(width + 1)[:width] if crossfade else np.ones(width)  # periodic Hann sums to one
    lead = width // 2
    padded = np.pad(x, (lead, num_frames * HOP + width - n - lead))
    starts = np.arange(num_frames) * HOP
    frames = padded[starts[:, None] + np.arange(width)] * window  # (F, width); frame f is centred on f * HOP
    out = np.fft.irfft(np.fft.rfft(frames, FILTER_FFT) * response, FILTER_FFT)  # (F, FILTER_FFT)
    y = np.zeros((num_frames + FILTER_FFT // HOP, HOP))
    for k in range(FILTER_FFT // HOP):  # overlap-add, one HOP-sized column of every frame at a time
        y[k:k + num_frames] += out[:, k * HOP:(k + 1) * HOP]
    return y.reshape(-1)[lead:lead + n]


def _unit_rms(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``x`` scaled so that its RMS over the samples where ``mask`` holds is one."""
    level = np.sqrt(np.mean(x[mask] ** 2)) if mask.any() else 0.0
    return x / level if level > 0 else x


def synthesize(tracks: Tracks, speaker: Speaker, num_samples: int, rng: np.random.Generator,
               legacy_vocoder: bool = False) -> np.ndarray:
    """Render ``tracks`` as a waveform at an arbitrary level.

    Args:
        legacy_vocoder: render as an LPC-style vocoder would (attack A03): f0 held constant over each frame,
            impulse excitation without jitter, shimmer or breath noise, and filters that jump at frame boundaries.
    """
    f0 = np.repeat(tracks.f0, HOP)[:num_samples] if legacy_vocoder else _frame_to_samples(tracks.f0, num_samples)
    natural = 0.0 if legacy_vocoder else 1.0
    pulses = glottal_pulses(f0, speaker.jitter * natural, speaker.shimmer * natural, rng, impulses=legacy_vocoder)
    voicing = _frame_to_samples(tracks.voicing, num_samples)
    breath = speaker.breathiness * natural * rng.standard_normal(num_samples)
    excitation = voicing * (pulses / (np.std(pulses) + 1e-9) + breath)
    crossfade = not legacy_vocoder
    voiced = filter_by_frames(excitation, resonator_response(tracks.formants, tracks.bandwidths, FILTER_FFT), crossfade)
    fric_response = resonator_response(tracks.fric_shape[:, :1], tracks.fric_shape[:, 1:], FILTER_FFT)
    fric_response /= np.abs(fric_response).max(axis=1, keepdims=True)
    frication = _frame_to_samples(tracks.frication, num_samples)
    fricated = filter_by_frames(frication * rng.standard_normal(num_samples), fric_response, crossfade)
    # Scale each path by its level where it is active, so the tracks' amplitudes set the vowel/fricative balance.
    voiced = _unit_rms(voiced, voicing > 0.5)
    fricated = _unit_rms(fricated, frication > 0.1)
    return voiced + 0.15 * fricated  # fricatives about 10 dB below vowels


# --- spoofing artefacts -----------------------------------------------------------------------------


def stft(x: np.ndarray) -> np.ndarray:
    """(frames, STFT_FFT // 2 + 1) complex STFT, Hann window, hop HOP, frames centred on multiples of HOP."""
    padded = np.pad(x, (STFT_FFT // 2, STFT_FFT // 2 + HOP))
    starts = np.arange(x.shape[0] // HOP + 1) * HOP
    return np.fft.rfft(padded[starts[:, None] + np.arange(STFT_FFT)] * STFT_WINDOW, axis=1)


def istft(spec: np.ndarray, num_samples: int) -> np.ndarray:
    """Least-squares inverse of :func:`stft` (weighted overlap-add), ``num_samples`` long."""
    window = STFT_WINDOW
    frames = np.fft.irfft(spec, STFT_FFT, axis=1) * window
    total = (spec.shape[0] - 1) * HOP + STFT_FFT
    y, norm = np.zeros(total), np.zeros(total)
    for k in range(STFT_FFT // HOP):  # overlap-add in HOP-sized columns, as in filter_by_frames
        cols = slice(k * HOP, (k + 1) * HOP)
        y_view = y[k * HOP:k * HOP + spec.shape[0] * HOP].reshape(-1, HOP)
        n_view = norm[k * HOP:k * HOP + spec.shape[0] * HOP].reshape(-1, HOP)
        y_view[:frames.shape[0]] += frames[:, cols]
        n_view[:frames.shape[0]] += window[cols] ** 2
    return (y / np.maximum(norm, 1e-8))[STFT_FFT // 2:STFT_FFT // 2 + num_samples]


def _random_phase(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return np.exp(2j * np.pi * rng.random(shape))


def noise_band_replication(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A01: above a random cutoff, keep only a smoothed envelope and excite it with noise (harmonics lost)."""
    spec = stft(x)
    cutoff = rng.uniform(1500, 3000) / (FS / STFT_FFT)  # in bins
    bins = np.arange(spec.shape[1])
    high = np.clip((bins - cutoff) / 8.0, 0.0, 1.0)  # 250 Hz crossfade
    width = int(rng.integers(9, 17))  # 280-500 Hz: wider than any f0, so the harmonics vanish
    envelope = np.sqrt(_smooth(np.abs(spec.T) ** 2, width).T)
    replaced = envelope * _random_phase(spec.shape, rng)
    return istft((1 - high) * spec + high * replaced, x.shape[0])


def griffin_lim(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A02: keep the STFT magnitude, rebuild the phase from noise with a few Griffin-Lim iterations."""
    magnitude = np.abs(stft(x))
    spec = magnitude * _random_phase(magnitude.shape, rng)
    for _ in range(int(rng.integers(1, 5))):
        spec = magnitude * np.exp(1j * np.angle(stft(istft(spec, x.shape[0]))))
    return istft(spec, x.shape[0])


def spectral_quantisation(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A04 (and A16): round log magnitudes to a coarse step and zero bins far below each frame's peak."""
    spec = stft(x)
    db = 20 * np.log10(np.abs(spec) + 1e-12)
    step = rng.uniform(6.0, 10.0)
    quantised = step * np.round(db / step + rng.uniform(-0.5, 0.5))
    floor = db.max(axis=1, keepdims=True) - rng.uniform(25.0, 40.0)
    magnitude = np.where(db > floor, 10 ** (quantised / 20), 0.0)
    return istft(magnitude * np.exp(1j * np.angle(spec)), x.shape[0])


def mu_law(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A05: mu-law companding to 6-8 bits and back, as a low-bit waveform vocoder's output."""
    levels = 2 ** int(rng.integers(4, 7))
    mu = levels - 1.0
    x = x / np.abs(x).max() * rng.uniform(0.5, 0.95)
    code = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)  # in [-1, 1]
    code = (np.floor((code + 1) / 2 * mu + 0.5) / mu) * 2 - 1
    return np.sign(code) * np.expm1(np.abs(code) * np.log1p(mu)) / mu


def _cepstral_envelope(log_magnitude: np.ndarray, num_coeffs: int) -> np.ndarray:
    """Smooth spectral envelope of each frame: the log magnitude liftered to its first cepstral coefficients."""
    cepstrum = np.fft.irfft(log_magnitude, axis=1)
    cepstrum[:, num_coeffs:-num_coeffs] = 0.0
    return np.fft.rfft(cepstrum, axis=1).real


def shrink_contrast(x: np.ndarray, contrast: float, num_coeffs: int) -> np.ndarray:
    """Shrink each frame's log spectrum towards its cepstral envelope by ``contrast`` (1 leaves it as it is).

    Harmonic peaks and the valleys between them flatten, as when a vocoder's spectral model is too smooth;
    the phase is kept.
    """
    spec = stft(x)
    log_magnitude = np.log(np.abs(spec) + 1e-9)
    envelope = _cepstral_envelope(log_magnitude, num_coeffs)
    return istft(np.exp(envelope + contrast * (log_magnitude - envelope)) * np.exp(1j * np.angle(spec)), x.shape[0])


def over_smoothing(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A06 (and A19): statistical-parametric over-smoothing, harmonics nearly flattened into the envelope."""
    return shrink_contrast(x, rng.uniform(0.0, 0.3), int(rng.integers(20, 31)))


def imaging_upsampler(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A07 (unseen): halve the rate, then double it by zero insertion and a weak 3-tap interpolator.

    The 0-4 kHz band comes back mirrored into 4-8 kHz, attenuated by the interpolator, as from a neural
    vocoder's transposed-convolution upsampling.
    """
    spec = np.fft.rfft(x - x.mean())  # an offset would come back as a steady 4 kHz tone
    spec[spec.shape[0] // 2:] = 0.0  # ideal low-pass at 4 kHz before decimating
    half = np.fft.irfft(spec, x.shape[0])[::2]
    up = np.zeros(half.shape[0] * 2)
    up[::2] = 2 * half
    leak = rng.uniform(0.0, 0.3)  # weight of the interpolator's side taps; 0.5 is linear interpolation
    smoothed = np.convolve(up, [leak, 1.0, leak], mode="same")
    return smoothed[:x.shape[0]]


def frame_ripple(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A17 (unseen): magnitudes smoothed over neighbouring frames, then a ripple at a vocoder frame rate."""
    spec = stft(x)
    smoothed = _smooth(np.abs(spec), int(rng.choice([5, 7, 9])))
    y = istft(smoothed * np.exp(1j * np.angle(spec)), x.shape[0])
    rate = FS / rng.choice([80, 100, 128, 160])  # Hz
    depth = rng.uniform(0.3, 0.5)
    phase = 2 * np.pi * rate * np.arange(x.shape[0]) / FS + rng.uniform(0, 2 * np.pi)
    ripple = 1 + depth * np.cos(phase)
    return y * ripple


Artefact = Callable[[np.ndarray, np.random.Generator], np.ndarray]
ARTEFACTS: dict[str, Artefact] = {
    "A01": noise_band_replication, "A02": griffin_lim, "A04": spectral_quantisation, "A05": mu_law,
    "A06": over_smoothing, "A07": imaging_upsampler, "A16": spectral_quantisation, "A17": frame_ripple,
    "A19": over_smoothing,
}  # A03 is not a post-process: it changes the synthesis (see synthesize's legacy_vocoder)


# --- one utterance, from talker to file ---------------------------------------------------------------


def recording_chain(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What every utterance goes through alike: a microphone's spectral tilt, a noise floor, a level.

    Returns:
        the waveform at an RMS level drawn from -30 ... -22 dBFS, whatever its class.
    """
    x = x / np.sqrt(np.mean(x**2))
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.shape[0], 1 / FS)
    tilt_db = rng.uniform(-2.0, 2.0) * np.log2(np.maximum(freqs, 100.0) / 1000.0)  # dB per octave around 1 kHz
    highpass = 1.0 / np.sqrt(1.0 + (rng.uniform(50, 120) / np.maximum(freqs, 1.0)) ** 4)
    x = np.fft.irfft(spec * 10 ** (tilt_db / 20) * highpass, x.shape[0])
    floor = np.cumsum(rng.standard_normal(x.shape[0])) * 0.02  # brownish room noise, then rid of its drift
    floor = np.fft.irfft(np.fft.rfft(floor) * highpass, x.shape[0])
    x = x / np.sqrt(np.mean(x**2)) + floor / np.sqrt(np.mean(floor**2)) * 10 ** (-rng.uniform(35, 50) / 20)
    return x / np.sqrt(np.mean(x**2)) * 10 ** (rng.uniform(-30, -22) / 20)


def make_utterance(source: str, speaker: Speaker, rng: np.random.Generator) -> np.ndarray:
    """One utterance by ``speaker``: bona fide if ``source`` is '-', else spoofed by that attack.

    Returns:
        (num_samples,) int16 samples.
    """
    num_samples = int(FS * np.exp(rng.uniform(np.log(MIN_SECONDS), np.log(MAX_SECONDS))))
    tracks = plan_utterance(num_samples, speaker, rng)
    speech = synthesize(tracks, speaker, num_samples, rng, legacy_vocoder=source == "A03")
    if source != "-":
        # Every spoof comes out of some vocoder: some harmonic smearing that all attacks share (and
        # that lets a detector trained on A01-A06 generalise), then the attack's own artefact.
        speech = shrink_contrast(speech, rng.uniform(0.3, 0.6), 30)
    if source in ARTEFACTS:
        speech = ARTEFACTS[source](speech, rng)
    x = recording_chain(speech, rng)
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


# --- the corpus ----------------------------------------------------------------------------------------


def scaled_counts(counts: dict[str, int], scale: float) -> dict[str, int]:
    """Utterances per source at ``scale``, at least two of each so every metric stays defined."""
    return {source: max(2, round(n * scale)) for source, n in counts.items()}


def write_split(out: Path, split: str, split_index: int, seed: int, scale: float) -> list[tuple[str, str, str]]:
    """Synthesise one split's audio and write its CM protocol.

    Returns:
        its (speaker, utt_id, source) entries, in protocol order.
    """
    plan = PLANS[split]
    paths = split_paths(out, split)
    paths.audio_dir.mkdir(parents=True, exist_ok=True)
    paths.protocol.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, split_index])
    jobs = [(str(rng.choice(plan.speakers)), source) for source, n in scaled_counts(plan.counts, scale).items()
            for _ in range(n)]
    jobs = [jobs[i] for i in rng.permutation(len(jobs))]
    ids = rng.choice(9_000_000, size=len(jobs), replace=False) + 1_000_000
    speakers = {spk: make_speaker(np.random.default_rng([seed, 1000 + int(spk[3:])])) for spk in plan.speakers}
    entries = []
    for i, ((speaker, source), number) in enumerate(zip(jobs, ids)):
        utt_id = f"LA_{plan.prefix}_{number:07d}"
        audio = make_utterance(source, speakers[speaker], np.random.default_rng([seed, split_index, i]))
        sf.write(audio_path(paths.audio_dir, utt_id), audio, FS, format="FLAC", subtype="PCM_16")
        entries.append((speaker, utt_id, source))
    lines = [f"{spk} {utt} - {src} {'bonafide' if src == '-' else 'spoof'}\n" for spk, utt, src in entries]
    paths.protocol.write_text("".join(lines))
    return entries


def write_asv_scores(path: Path, entries: list[tuple[str, str, str]], rng: np.random.Generator) -> None:
    """Synthetic ASV scores for one split: three target and six non-target trials per bona fide utterance,
    one spoof trial per spoofed utterance; spoofs score between the two, by attack."""
    num_bonafide = sum(src == "-" for _, _, src in entries)
    lines = [f"bonafide target {s:.6f}\n" for s in rng.normal(3.0, 1.2, 3 * num_bonafide)]
    lines += [f"bonafide nontarget {s:.6f}\n" for s in rng.normal(-3.5, 1.5, 6 * num_bonafide)]
    attack_means = {}
    for _, _, src in entries:
        if src != "-":
            mean = attack_means.setdefault(src, float(rng.uniform(-0.5, 2.5)))
            lines.append(f"{src} spoof {rng.normal(mean, 1.5):.6f}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))


def summarise(split: str, entries: list[tuple[str, str, str]], audio_dir: Path) -> str:
    """One line per split: utterances per source and seconds of audio."""
    counts = Counter("bonafide" if src == "-" else src for _, _, src in entries)
    seconds = sum(sf.info(audio_path(audio_dir, utt)).duration for _, utt, _ in entries)
    by_source = ", ".join(f"{k} {v}" for k, v in counts.items())
    return f"  {split:5s} {len(entries):4d} utterances, {seconds / 60:4.1f} min ({by_source})"


def write_demo_corpus(out: Path, seed: int = 0, scale: float = 1.0) -> list[str]:
    """Write the corpus under ``out``: each split's audio and CM protocol, and the dev and eval ASV scores.

    Args:
        out: corpus root, the ``database_path`` of ``config/demo.json``; folders are created as needed.
        seed: random seed; the same seed writes byte-identical files.
        scale: multiplies every utterance count (at least two of each source remain); 1.0 writes about
            960 utterances, 0.05 a quick test corpus.

    Returns:
        one summary line per split: utterances per source and minutes of audio.

    Raises:
        ValueError: ``scale`` is not positive.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    out = Path(out)
    summary = []
    for split_index, split in enumerate(PLANS):
        entries = write_split(out, split, split_index, seed, scale)
        paths = split_paths(out, split)
        if paths.asv_scores is not None:
            write_asv_scores(paths.asv_scores, entries, np.random.default_rng([seed, split_index, 10**9]))
        summary.append(summarise(split, entries, paths.audio_dir))
    return summary
