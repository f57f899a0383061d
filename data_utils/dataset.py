"""The data path: a training corpus's splits (``data_utils.corpora``), audio loading, crop/pad, and the datasets
AASIST reads.

Waveforms are soundfile's float64 samples in [-1, 1] cast to float32, with no other normalisation.
Training takes a random window of ``nb_samp`` samples, or the first ``nb_samp`` where the recipe says so
(``train_crop``); dev and eval take the first ``nb_samp``. All repeat a shorter signal end to end and cut
it, as the published code does.
"""
import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
from scipy.signal import firwin, resample_poly
import torch
from torch.utils.data import Dataset, Sampler

from data_utils.augmentation.augmenter import Augmenter
from data_utils.corpora import SAMPLE_RATE, SplitPaths, Trials, get_corpus
from utils.config import TRAIN_CROPS, AugmentationConfig
from utils.errors import InputError
from utils.evaluation.score_files import CM_LABELS, ASVScores, read_asv_scores

LA2019 = "asvspoof2019_la"  # the corpus AASIST was published on, and the default of a config's "corpus"
SPLITS = get_corpus(LA2019).splits
KEYS = CM_LABELS[::-1]  # index = class label: 0 spoof, 1 bona fide


@dataclass(frozen=True)
class ProtocolEntry:
    """One line of a CM protocol: ``SPEAKER UTT_ID - ATTACK KEY``.

    ``attack`` is the attack id (``A01`` ... ``A19``), or ``-`` for bona fide; it is the SOURCE column
    of a score file.
    """

    speaker: str
    utt_id: str
    attack: str
    key: str

    def __post_init__(self) -> None:
        if self.key not in KEYS:
            raise InputError(f"KEY must be 'bonafide' or 'spoof', got {self.key!r}")

    @property
    def label(self) -> int:
        """Class label: 1 bona fide, 0 spoof."""
        return KEYS.index(self.key)


def split_paths(database_path: str | os.PathLike, split: str) -> SplitPaths:
    """Standard paths of an ASVspoof 2019 LA ``split`` ('train', 'dev' or 'eval') under ``database_path``."""
    return get_corpus(LA2019).paths(database_path, split)


def audio_path(audio_dir: str | os.PathLike, utt_id: str) -> Path:
    """``<audio_dir>/<utt_id>.flac``."""
    return Path(audio_dir) / f"{utt_id}.flac"


def protocol_entries(trials: Trials) -> list[ProtocolEntry]:
    """The trials of a training corpus's split (``Corpus.split_trials``) as protocol entries."""
    return [ProtocolEntry(*row) for row in zip(trials.factors["speaker"].tolist(), trials.ids.tolist(),
                                               trials.factors["attack"].tolist(), trials.labels.tolist())]


def read_protocol(path: str | os.PathLike) -> list[ProtocolEntry]:
    """Parse an ASVspoof 2019 LA CM protocol file, one entry per non-blank line, in file order.

    Raises:
        InputError: the file is missing or unreadable, has no entries, or a line does not have five
            fields, has a KEY other than bonafide/spoof, or repeats an earlier line's UTT_ID (the message
            gives the file and line number).
    """
    return protocol_entries(get_corpus(LA2019).read_keys(path))


def read_mono(path: str | os.PathLike, frames: int = -1) -> tuple[np.ndarray, int]:
    """Read any audio file soundfile reads (its first ``frames`` frames, at its own rate; -1: all of it);
    channels are averaged (in float64).

    Returns:
        (num_samples,) float64 samples in [-1, 1], and the sample rate.

    Raises:
        InputError: naming the file, if it is missing, a directory, empty, not audio or corrupt,
            has no samples, or holds NaN or infinite samples (a float WAV can).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"audio file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not an audio file")
    # libsndfile writes a zero-sample FLAC as a 0-byte file and then cannot open it; say what it is.
    if path.stat().st_size == 0:
        raise InputError(f"audio file {path} is empty (0 bytes)")
    try:
        x, sample_rate = sf.read(path, frames=frames, always_2d=True)  # (num_samples, channels) float64
    except sf.SoundFileError as e:
        reason = getattr(e, "error_string", None) or str(e)
        raise InputError(f"cannot read audio file {path}: not audio in a format soundfile reads, "
                         f"or corrupt ({reason})") from None
    except (RuntimeError, OSError) as e:
        raise InputError(f"cannot read audio file {path}: {e}") from None
    if x.shape[0] == 0:
        raise InputError(f"audio file {path} has no samples")
    x = x.mean(axis=1)
    not_finite = np.flatnonzero(~np.isfinite(x))
    if not_finite.size:
        raise InputError(f"audio file {path} holds {not_finite.size} NaN or infinite sample(s), "
                         f"the first at sample {not_finite[0]}")
    return x, sample_rate


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """Read a 16 kHz audio file (``read_mono``) as float32 samples in [-1, 1].

    Returns:
        (num_samples,) float32.

    Raises:
        InputError: naming the file, as ``read_mono`` does, or if it is not 16 kHz.
    """
    x, sample_rate = read_mono(path)
    if sample_rate != SAMPLE_RATE:
        raise InputError(f"audio file {path} is {sample_rate} Hz; AASIST expects {SAMPLE_RATE} Hz")
    return x.astype(np.float32)


# resample_poly's default low-pass (Kaiser beta 5, 10 zero crossings a side) already attenuates from
# about 6 kHz, and AASIST's sinc filters reach 8 kHz, where much of the evidence of spoofing lies. This
# steeper one keeps the band: a 16 kHz file upsampled to 48 kHz and read back scores within about 0.013
# of the original (AASIST-L, LA_tiny), against up to 0.11 with the default filters.
_ZERO_CROSSINGS = 64
_KAISER_BETA = 8.0


@functools.lru_cache(maxsize=16)
def _lowpass(up: int, down: int) -> np.ndarray:
    """FIR taps for ``resample_poly(x, up, down)``: cutoff at the lower of the two Nyquist rates."""
    rate = max(up, down)
    taps = firwin(2 * _ZERO_CROSSINGS * rate + 1, 1.0 / rate, window=("kaiser", _KAISER_BETA))
    taps.setflags(write=False)  # shared through the cache
    return taps


def to_16k(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample mono audio to 16 kHz with a polyphase filter (scipy's ``resample_poly``, steep low-pass).

    Args:
        x: (T,) float waveform at ``sample_rate`` Hz.
        sample_rate: in Hz, positive.

    Returns:
        (ceil(T * 16000 / sample_rate),) float32; ``x`` itself (cast) when it is 16 kHz already.
    """
    if sample_rate <= 0:
        raise InputError(f"sample rate must be positive, got {sample_rate}")
    if sample_rate != SAMPLE_RATE:
        g = math.gcd(SAMPLE_RATE, sample_rate)  # the reduced ratio keeps the polyphase filter short
        up, down = SAMPLE_RATE // g, sample_rate // g
        x = resample_poly(np.asarray(x, dtype=np.float64), up, down, window=_lowpass(up, down))
    return np.asarray(x, dtype=np.float32)


def pad_repeat(x: np.ndarray, nb_samp: int) -> np.ndarray:
    """The first ``nb_samp`` samples of ``x``, repeating ``x`` end to end first if it is shorter.

    Args:
        x: (num_samples,) waveform, num_samples >= 1.
        nb_samp: output length in samples.

    Returns:
        (nb_samp,) with the dtype of ``x``.
    """
    if x.shape[0] == 0:
        raise ValueError("cannot pad an empty waveform")
    if x.shape[0] >= nb_samp:
        return x[:nb_samp]
    num_repeats = -(-nb_samp // x.shape[0])  # ceil
    return np.tile(x, num_repeats)[:nb_samp]


def random_crop(x: np.ndarray, nb_samp: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """A window of ``nb_samp`` samples at a uniform offset in 0 ... len(x) - nb_samp, both ends included.

    A shorter ``x`` is repeat-padded as in :func:`pad_repeat`. The offset comes from ``rng`` if given,
    else from numpy's global generator (``np.random.seed`` makes it reproducible).

    Args:
        x: (num_samples,) waveform.
        nb_samp: output length in samples.

    Returns:
        (nb_samp,) with the dtype of ``x``.
    """
    if x.shape[0] < nb_samp:
        return pad_repeat(x, nb_samp)
    high = x.shape[0] - nb_samp + 1  # exclusive bound, so the last offset is reachable
    offset = int(np.random.randint(high) if rng is None else rng.integers(high))
    return x[offset : offset + nb_samp]


def _listing(title: str, items: Sequence, show: int) -> str:
    """``title``, then the first ``show`` items, one an indented line."""
    head = f"{title}; the first {show}:" if len(items) > show else f"{title}:"
    return "\n  ".join([head, *(str(item) for item in items[:show])])


def _missing_files(paths: Sequence[Path]) -> list[Path]:
    """The ``paths`` that do not exist, in order: one listing per folder, not a stat per file (the train
    split has 25k files, 2021 DF eval 611k)."""
    listings: dict[Path, set[str]] = {}
    missing = []
    for path in paths:
        if path.parent not in listings:
            try:
                listings[path.parent] = set(os.listdir(path.parent))
            except OSError as e:
                raise InputError(f"cannot list audio directory {path.parent}: {e}") from None
        if path.name not in listings[path.parent]:
            missing.append(path)
    return missing


def _missing_audio(entries: Sequence[ProtocolEntry], audio_dir: Path) -> list[Path]:
    """The paths of the entries' flac files that ``audio_dir`` lacks, in protocol order."""
    return _missing_files([audio_path(audio_dir, e.utt_id) for e in entries])


def check_audio_exists(entries: Sequence[ProtocolEntry], audio_dir: str | os.PathLike, show: int = 5) -> None:
    """Fail before a long job if any entry's ``<utt_id>.flac`` is absent from ``audio_dir``.

    Raises:
        InputError: giving how many files are missing and the paths of the first ``show``.
    """
    audio_dir = Path(audio_dir)
    missing = _missing_audio(entries, audio_dir)
    if missing:
        raise InputError(_listing(f"{len(missing)} of {len(entries)} audio files in the protocol are missing "
                                  f"from {audio_dir}", missing, show))


def check_files_exist(paths: Sequence[Path], show: int = 5) -> None:
    """Fail before a long job if any of ``paths`` is absent.

    Raises:
        InputError: giving how many files are missing and the first ``show``.
    """
    missing = _missing_files(paths)
    if missing:
        raise InputError(_listing(f"{len(missing)} of {len(paths)} audio files are missing", missing, show))


def header_sample_rate(path: Path) -> int:
    """The sample rate in an audio file's header, without decoding any audio.

    A FLAC file's rate is read from its STREAMINFO block directly (about 5 us a file; ``soundfile.info``
    takes about 70 us, which is 8 s for the 121k files of train, dev and eval); anything else, or a
    FLAC header that does not parse, goes through ``soundfile.info``.

    Raises:
        InputError: naming the file, if its header cannot be read.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(42)  # "fLaC", a 4-byte block header, the 34-byte STREAMINFO
        # STREAMINFO must come first (block type 0); the rate is its 20 bits from byte 18; 0 is invalid.
        if len(head) == 42 and head[:4] == b"fLaC" and head[4] & 0x7F == 0 and head[18:21] != b"\0\0\0":
            return int.from_bytes(head[18:21], "big") >> 4
        return sf.info(str(path)).samplerate
    except sf.SoundFileError as e:
        reason = getattr(e, "error_string", None) or str(e)
    except (RuntimeError, OSError) as e:
        reason = getattr(e, "strerror", None) or str(e)
    raise InputError(f"cannot read audio file {path}: {reason}")


def _header_problems(paths: Sequence[Path]) -> tuple[list[str], list[str]]:
    """(unreadable, not 16 kHz): a line on each file whose header alone rules it out."""
    unreadable, wrong_rate = [], []
    for path in paths:
        try:
            sample_rate = header_sample_rate(path)
        except InputError as e:
            unreadable.append(str(e))
            continue
        if sample_rate != SAMPLE_RATE:
            wrong_rate.append(f"{path} ({sample_rate} Hz)")
    return unreadable, wrong_rate


def check_split(split: str, paths: SplitPaths, entries: Sequence[ProtocolEntry], show: int = 5) -> None:
    """Fail before a long job on whatever would make the split's numbers meaningless, all of it at once:
    audio files missing, unreadable or not 16 kHz (read from the headers only), and one class only.

    Raises:
        InputError: a paragraph per kind of problem, with its count and the first ``show`` files.
    """
    all_paths = [audio_path(paths.audio_dir, e.utt_id) for e in entries]
    missing = _missing_files(all_paths)
    absent = set(missing)
    present = [p for p in all_paths if p not in absent]
    unreadable, wrong_rate = _header_problems(present)
    found = {f"in the protocol are missing from {paths.audio_dir}": missing,
             "cannot be read": unreadable,
             f"are not {SAMPLE_RATE} Hz": wrong_rate}
    problems = [_listing(f"{len(files)} of {len(entries)} audio files {what}", files, show)
                for what, files in found.items() if files]
    keys = {e.key for e in entries}
    if len(keys) == 1:
        why = "training on one class learns nothing" if split == "train" else "the EER needs both classes"
        problems.append(f"all {len(entries)} trials in {paths.protocol} are {keys.pop()}: {why}")
    if problems:
        raise InputError(f"the {split} split cannot be used:\n- " + "\n- ".join(problems))


class _Utterances(Dataset):
    """The protocol entries of one split and where their flac files lie; each file is read when needed."""

    def __init__(self, entries: Sequence[ProtocolEntry], audio_dir: str | os.PathLike, nb_samp: int):
        self.entries = list(entries)
        self.audio_dir = Path(audio_dir)
        self.nb_samp = nb_samp

    def __len__(self) -> int:
        return len(self.entries)

    def read(self, index: int) -> np.ndarray:
        return load_audio(audio_path(self.audio_dir, self.entries[index].utt_id))


class TrainDataset(_Utterances):
    """Training items: a window of ``nb_samp`` samples of each utterance, augmented first where ``augment`` is
    given (the whole utterance, before the crop, as RawBoost was published), and its label.

    The window is the recipe's ``crop``: "random", at a uniformly random offset (AASIST's published loader);
    "first", the first ``nb_samp`` samples, repeat-padded when shorter (SSL-AASIST's published loader).
    Each file is read when its item is requested. Index it with ``(index, crop_seed)`` pairs from
    :class:`TrainSampler`: the crop, and every draw of the augmentation, then depend only on the run's
    seed, the epoch and the item, not on which worker reads it, so runs are reproducible and a resumed run
    equals an uninterrupted one. The crop is ``default_rng(crop_seed)``'s, with or without augmentation
    (which keeps the length). A plain integer index draws from numpy's global generator.
    """

    def __init__(self, entries: Sequence[ProtocolEntry], audio_dir: str | os.PathLike, nb_samp: int,
                 augment: Augmenter | None = None, crop: str = "random"):
        super().__init__(entries, audio_dir, nb_samp)
        if crop not in TRAIN_CROPS:
            raise ValueError(f"crop must be one of {TRAIN_CROPS}, got {crop!r}")
        self.augment, self.crop = augment, crop

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        """Returns: waveform (nb_samp,) float32, label (1 bona fide, 0 spoof)."""
        index, crop_seed = key if isinstance(key, tuple) else (key, None)
        x = self.read(index)
        if self.augment is not None:
            x = self.augment(x, crop_seed if crop_seed is not None else int(np.random.randint(2**63)))
        if self.crop == "first":
            return torch.from_numpy(pad_repeat(x, self.nb_samp)), self.entries[index].label
        rng = None if crop_seed is None else np.random.default_rng(crop_seed)
        return torch.from_numpy(random_crop(x, self.nb_samp, rng)), self.entries[index].label


class TrainSampler(Sampler):
    """Shuffled ``(index, crop_seed)`` pairs for one rank, fixed by ``(seed, epoch)``.

    Every epoch draws a fresh permutation of all items; with ``world_size`` ranks, rank r takes every
    world_size-th item of it, and each rank gets the same count (the remainder is dropped, as the
    last incomplete batch is). Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, num_items: int, seed: int, rank: int = 0, world_size: int = 1):
        self.num_items, self.seed, self.rank, self.world_size = num_items, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items // self.world_size

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.num_items)
        crop_seeds = rng.integers(2**63, size=self.num_items)
        mine = order[self.rank::self.world_size][:len(self)]
        return iter([(int(i), int(crop_seeds[i])) for i in mine])


def scoring_input(x: np.ndarray, nb_samp: int | None, min_samples: int = 1) -> np.ndarray:
    """What a model scores of an utterance: its first ``nb_samp`` samples, repeat-padded when shorter (the
    published evaluation), or with ``nb_samp`` None the whole utterance (full-length scoring, as Nes2Net's
    ``--test_protocol full`` loader), repeat-padded only up to ``min_samples``, the shortest the model takes."""
    return pad_repeat(x, nb_samp if nb_samp is not None else max(x.shape[0], min_samples))


class EvalDataset(_Utterances):
    """Dev/eval items: the first ``nb_samp`` samples of each utterance (repeat-padded), or with ``nb_samp``
    None the whole utterance (``scoring_input``), and its id.

    ``entries`` stays public so a scorer can write ``UTT_ID SOURCE KEY SCORE`` lines from it.
    """

    def __init__(self, entries: Sequence[ProtocolEntry], audio_dir: str | os.PathLike, nb_samp: int | None,
                 min_samples: int = 1):
        super().__init__(entries, audio_dir, nb_samp)
        self.min_samples = min_samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        """Returns: waveform (nb_samp,) float32, utt_id."""
        x = scoring_input(self.read(index), self.nb_samp, self.min_samples)
        return torch.from_numpy(x), self.entries[index].utt_id


@dataclass
class Split:
    """One set of the corpus, ready to use: its dataset and (dev, eval) the organisers' ASV scores."""

    dataset: TrainDataset | EvalDataset
    asv: ASVScores | None = None
    trials: Trials | None = None


def load_split(database_path: str | os.PathLike, split: str, nb_samp: int,
               asv_score_path: str | os.PathLike | None = None, asv_required: bool = False,
               corpus: str = LA2019, augmentation: AugmentationConfig | None = None,
               train_crop: str = "random", min_samples: int = 1) -> Split:
    """Read a split's protocol, check it (``check_split``: before any long job), and read the ASV
    scores for its min t-DCF.

    Args:
        asv_score_path: the ASV score file; where it does not exist the split has no ASV scores, unless
            ``asv_required``, which makes that an error.
        corpus: a corpus of ``data_utils.corpora`` that has training splits (``asvspoof2019_la``,
            ``asvspoof5``).
        augmentation: the config's ``augmentation``, for the train split; dev and eval ignore it (they
            are never augmented). Its codecs are checked here, so a missing one stops the run at start-up.
        train_crop: the config's ``train_crop``, for the train split (``TrainDataset``'s ``crop``).
        nb_samp: None scores dev or eval at full length (``scoring_input``), at least ``min_samples``.
    """
    augment = Augmenter.from_config(augmentation) if split == "train" else None
    trials, audio_dir = get_corpus(corpus).split_trials(database_path, split)
    entries, paths = protocol_entries(trials), SplitPaths(audio_dir, Path(trials.path), None)
    check_split(split, paths, entries)
    if split == "train":
        return Split(TrainDataset(entries, paths.audio_dir, nb_samp, augment, train_crop), trials=trials)
    asv = None
    if asv_score_path is not None:
        if asv_required or Path(asv_score_path).is_file():
            asv = read_asv_scores(asv_score_path)
    return Split(EvalDataset(entries, paths.audio_dir, nb_samp, min_samples), asv, trials)


class AudioFiles(Dataset):
    """Scoring items from explicit audio files: the first ``nb_samp`` samples (repeat-padded) of each, or the
    whole file (``scoring_input``), resampled to 16 kHz where a file is at another rate, and its id.

    For corpora whose keys name the audio files (``data_utils.corpora``); a 16 kHz file gives exactly
    what :class:`EvalDataset` gives for it.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], ids: Sequence[str], nb_samp: int | None,
                 min_samples: int = 1):
        if len(paths) != len(ids):
            raise ValueError(f"{len(paths)} paths but {len(ids)} ids")
        self.paths, self.ids, self.nb_samp, self.min_samples = [Path(p) for p in paths], list(ids), nb_samp, min_samples

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        """Returns: waveform (nb_samp,) float32, id."""
        x, sample_rate = read_mono(self.paths[index])
        return torch.from_numpy(scoring_input(to_16k(x, sample_rate), self.nb_samp, self.min_samples)), self.ids[index]
