"""Training-data augmentation for generalisation to unseen channels: RawBoost (``data_utils/augmentation/rawboost.py``) and a
round trip through a lossy codec, applied to the whole training utterance before the crop (as published for
RawBoost); never to dev or eval data.

Codecs (``utils.config.CODECS``, the names a config may give), encoded and decoded in memory by libsndfile
through ``soundfile``:

    mp3     MPEG-1/2 Layer III (LAME)    format "MP3", subtype "MPEG_LAYER_III"   libsndfile >= 1.1.0
    vorbis  Ogg Vorbis                   format "OGG", subtype "VORBIS"
    opus    Ogg Opus                     format "OGG", subtype "OPUS"             libsndfile >= 1.0.29

All three exist here (soundfile 0.14.0 with libsndfile 1.2.2, the library its wheels bundle);
:class:`Augmenter` checks the ones a config names when it is built and refuses the run then, not mid-epoch.
The quality is soundfile's ``compression_level`` (soundfile >= 0.13): 0 is the best quality, 1 the worst.
Each codec maps it to its own scale; for 16 kHz noise, from level 0 to level 1 about 50 -> 20 kb/s for MP3
(variable bitrate), 75 -> 35 kb/s for Vorbis and 260 -> 8 kb/s for Opus. libsndfile's MP3 encoder refuses
level 1.0 itself (it takes levels below 1). ``bitrate_mode`` is left at libsndfile's default (variable for
MP3): libsndfile 1.2.2 refuses to set it for Vorbis and Opus.

Length and alignment: libsndfile removes each codec's encoder delay and end padding when it decodes (the
LAME header's gapless info, Opus's pre-skip, Vorbis's granule positions), so the decoded signal has the
input's length and no lag (measured here at every length from 1 sample up). In case another libsndfile
leaves padding, the result is cut, or zero-padded at the end, to the input's length.

Randomness: every draw for an utterance comes from generators seeded by one integer, the item's crop seed
(``TrainSampler``, itself fixed by (seed, epoch, index)): RawBoost from a ``numpy.random.RandomState`` (the
legacy stream the published code draws from) and the codec, its use and its level from a ``Generator``, each
on its own child stream of that seed, so neither shifts the other or the crop (``default_rng(crop_seed)``).
The same item is then the same augmented waveform in any worker and after a resume.
"""
import io
from typing import Sequence

import numpy as np
import soundfile as sf

from data_utils.corpora import SAMPLE_RATE
from data_utils.augmentation.rawboost import rawboost
from utils.config import CODECS, AugmentationConfig
from utils.errors import InputError

# Child streams of an utterance's seed (numpy SeedSequence spawn keys); the crop uses the seed itself.
_RAWBOOST_STREAM, _CODEC_STREAM = 0, 1


def codec_round_trip(x: np.ndarray, codec: str, compression_level: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Encode ``x`` with ``codec`` at ``compression_level`` and decode it again, in memory.

    Args:
        x: (L,) float waveform at ``sr`` Hz, L >= 1. Samples beyond [-1, 1] are clipped by the encoder.
        codec: ``mp3``, ``vorbis`` or ``opus``.
        compression_level: 0 (best quality) to 1 (smallest file); MP3 takes levels below 1.
    Returns:
        (L,) float32 at ``sr`` Hz.
    """
    c = CODECS[codec]
    buffer = io.BytesIO()
    sf.write(buffer, x, sr, format=c.format, subtype=c.subtype, compression_level=compression_level)
    buffer.seek(0)
    y, rate = sf.read(buffer, dtype="float32")
    if rate != sr:
        raise RuntimeError(f"{codec} decoded at {rate} Hz, encoded at {sr} Hz")
    if len(y) < len(x):
        y = np.pad(y, (0, len(x) - len(y)))
    return y[:len(x)]


def check_codec(codec: str, compression_levels: Sequence[float], sr: int = SAMPLE_RATE) -> None:
    """Fail at start-up, not mid-epoch, where the installed libsndfile lacks ``codec`` or refuses one of the
    ``compression_levels``: a round trip of 0.1 s of noise at each.

    Args:
        codec: a name of ``utils.config.CODECS`` (the config has checked it).

    Raises:
        InputError: naming the codec, with the versions installed and the formats they offer.
    """
    c = CODECS[codec]
    where = f"soundfile {sf.__version__} with libsndfile {sf.__libsndfile_version__}"
    if c.format not in sf.available_formats() or c.subtype not in sf.available_subtypes(c.format):
        offered = ", ".join(f"{f} ({', '.join(sf.available_subtypes(f))})" for f in ("MP3", "OGG")
                            if f in sf.available_formats()) or "neither MP3 nor OGG"
        raise InputError(f"augmentation.codecs: {codec} ({c.format}/{c.subtype}) is not available in {where}, "
                         f"which offers {offered}; remove it or install a libsndfile that has it")
    probe = (0.1 * np.random.default_rng(0).standard_normal(sr // 10)).astype(np.float32)
    for level in compression_levels:
        try:
            y = codec_round_trip(probe, codec, level, sr)
        except TypeError:  # soundfile < 0.13: no compression_level argument
            raise InputError(f"codec augmentation needs soundfile >= 0.13 (compression levels); "
                             f"this is {sf.__version__}") from None
        except (sf.SoundFileError, RuntimeError) as e:
            reason = str(getattr(e, "error_string", None) or e)
            reason = "" if "Garbled" in reason else f": {reason}"  # libsndfile's text for a refused setting
            hint = " (its MP3 encoder takes levels below 1)" if codec == "mp3" and level >= 1 else ""
            raise InputError(f"augmentation.codec_compression: {codec} cannot encode at compression level "
                             f"{level:g} in {where}{hint}{reason}") from None
        if y.shape != probe.shape:
            raise InputError(f"augmentation.codecs: {codec} in {where} does not keep the signal's length")


class Augmenter:
    """RawBoost, then with probability ``codec_prob`` a codec round trip, drawn from one seed per utterance.

    Takes a validated ``AugmentationConfig``; building it checks what the config cannot, on a probe signal:
    the codecs the installed libsndfile has, at both ends of the compression range, and RawBoost's parameters
    at this sample rate; so a setting this machine refuses stops the run before training.
    """

    def __init__(self, config: AugmentationConfig, sr: int = SAMPLE_RATE):
        self.config, self.sr = config, sr
        if config.codec_prob > 0:
            for codec in config.codecs:
                check_codec(codec, sorted(set(config.codec_compression)), sr)
        if config.rawboost_algo:
            rawboost(np.full(sr // 10, 0.1, np.float32), config.rawboost_algo, np.random.RandomState(0), sr,
                     config.rawboost)

    @classmethod
    def from_config(cls, config: AugmentationConfig | None) -> "Augmenter | None":
        """The augmenter of a config's ``augmentation``; None where it is absent or changes nothing."""
        if config is None or not config.active:
            return None
        return cls(config)

    def __call__(self, x: np.ndarray, seed: int) -> np.ndarray:
        """Augment one whole utterance.

        Args:
            x: (L,) float32 waveform at 16 kHz.
            seed: non-negative int that fixes every random draw (the item's crop seed).
        Returns:
            (L,) float32.
        """
        c = self.config
        if c.rawboost_algo:
            stream = np.random.MT19937(np.random.SeedSequence(seed, spawn_key=(_RAWBOOST_STREAM,)))
            x = rawboost(x, c.rawboost_algo, np.random.RandomState(stream), self.sr, c.rawboost)
        if c.codec_prob > 0:
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_CODEC_STREAM,)))
            use, codec, level = rng.random(), rng.integers(len(c.codecs)), rng.uniform(*c.codec_compression)
            if use < c.codec_prob:
                x = codec_round_trip(x, c.codecs[codec], level, self.sr)
        return x
