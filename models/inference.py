"""Score your own recordings: any format soundfile reads, any sample rate, any channel count, any length.

    from models import load_model, score
    model = load_model("config/config.json", "checkpoints/weights/AASIST.pth", device="cpu")
    result = score(model, "my_recording.mp3")
    result.score, result.bonafide_prob   # bona fide logit (higher = more bona fide), its softmax probability

Default scoring is the published evaluation's: the first ``nb_samp`` samples at 16 kHz, repeated end to
end if shorter, so a 16 kHz file scores as ``evaluate.py`` scores it. ``segments=True`` also scores
the whole recording in ``nb_samp`` windows (hop ``nb_samp // 2`` by default) and reports the mean and the
lowest window score.
"""
import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import soundfile as sf
import torch

from data_utils.dataset import SAMPLE_RATE, pad_repeat, read_mono, to_16k
from utils.errors import InputError
from utils.io import atomic_open, atomic_write_json, printable_path
from utils.precision import is_compiled
from utils.engine.scoring import forward_logits

# Extensions of the container formats libsndfile reads, by soundfile's format name. A folder search
# keeps only these; RAW (no header) and MAT4/MAT5 (.mat is mostly not audio) are left out on purpose.
_EXTENSIONS_BY_FORMAT = {
    "WAV": ("wav", "wave"), "WAVEX": ("wav",), "FLAC": ("flac",), "OGG": ("ogg", "oga", "opus"),
    "MP3": ("mp3",), "AIFF": ("aiff", "aif", "aifc"), "AU": ("au", "snd"), "CAF": ("caf",),
    "W64": ("w64",), "RF64": ("rf64",), "NIST": ("sph", "nist"), "IRCAM": ("sf",), "VOC": ("voc",),
    "SVX": ("iff", "svx"), "SD2": ("sd2",), "HTK": ("htk",), "PAF": ("paf",), "PVF": ("pvf",),
    "AVR": ("avr",), "XI": ("xi",), "WVE": ("wve",), "SDS": ("sds",),
}
AUDIO_EXTENSIONS = frozenset(
    f".{ext}" for fmt, exts in _EXTENSIONS_BY_FORMAT.items() if fmt in sf.available_formats() for ext in exts
)


@dataclass(frozen=True)
class ScoreResult:
    """What AASIST says about one recording.

    Attributes:
        score: the published score, ``logits[:, 1]`` (bona fide logit) of the first ``nb_samp`` samples,
            repeat-padded; higher means more likely bona fide.
        bonafide_prob: ``softmax(logits)[1]`` of that window, in [0, 1].
        duration: length of the recording, in seconds.
        num_windows: windows scored (1 without ``segments``).
        window_mean: mean score over the windows (None without ``segments``).
        window_min: the lowest (most spoof-like) window score (None without ``segments``).
        window_min_start: where that window starts, in seconds (None without ``segments``).
    """

    score: float
    bonafide_prob: float
    duration: float
    num_windows: int = 1
    window_mean: float | None = None
    window_min: float | None = None
    window_min_start: float | None = None


# --- audio in -----------------------------------------------------------------------------------

def read_any_audio(path: str | os.PathLike) -> np.ndarray:
    """Read any audio file soundfile reads as a 16 kHz mono waveform.

    Channels are averaged (``data_utils.dataset.read_mono``, as ``load_audio`` reads), then the
    signal is resampled to 16 kHz (``data_utils.dataset.to_16k``); a 16 kHz file gives exactly
    ``load_audio``'s samples.

    Returns:
        (T,) float32 in about [-1, 1], at 16 kHz.

    Raises:
        InputError: naming the file and the reason: missing, a directory, empty, not audio or corrupt,
            no samples, or NaN/infinite samples.
    """
    x, sample_rate = read_mono(path)
    return to_16k(x, sample_rate)


@dataclass(frozen=True)
class Audio:
    """The first samples of a recording, with the whole recording's length (``read_audio_head``)."""
    samples: np.ndarray  # (T,) float32 at 16 kHz
    duration: float      # seconds, of the whole recording


def read_audio_head(path: str | os.PathLike, num_samples: int) -> Audio:
    """The first ``num_samples`` samples of any audio file at 16 kHz (all of it when shorter), reading only
    the frames they need: memory does not grow with the file's length.

    The samples equal ``read_any_audio(path)[:num_samples]``: at another rate, the frames read reach one
    second past the last sample kept, beyond the resampling filter's reach (``data_utils.dataset.to_16k``),
    so the filter sees the same input as on the whole file.

    Raises:
        InputError: as ``read_any_audio``.
    """
    try:
        # Not a regular file (a device, a pipe) or empty: read_any_audio says so without opening it.
        info = sf.info(str(path)) if Path(path).is_file() and Path(path).stat().st_size > 0 else None
    except Exception:  # soundfile's errors: the whole read says what is wrong with the file
        info = None
    if info is None:
        x = read_any_audio(path)
        return Audio(x[:num_samples], x.shape[0] / SAMPLE_RATE)
    rate = info.samplerate
    frames = num_samples
    if rate != SAMPLE_RATE:  # one second more than the samples kept: far beyond the filter's reach (~4 ms)
        frames = math.ceil(num_samples * rate / SAMPLE_RATE) + rate
    x, sample_rate = read_mono(path, frames=frames if 0 < frames < info.frames else -1)
    duration = math.ceil(info.frames * SAMPLE_RATE / rate) / SAMPLE_RATE if rate > 0 else 0.0
    return Audio(to_16k(x, sample_rate)[:num_samples], duration)


def _as_waveform(audio: np.ndarray | torch.Tensor, sample_rate: int | None) -> np.ndarray:
    """A notebook's array as a 16 kHz float32 waveform; ``sample_rate`` None means 16 kHz."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise InputError(f"expected a mono (samples,) waveform, got shape {audio.shape}; "
                         "average the channels first (soundfile's (samples, channels): x.mean(axis=1))")
    if not np.issubdtype(audio.dtype, np.floating):
        raise InputError(f"expected float samples in [-1, 1], got {audio.dtype} "
                         "(divide 16-bit PCM by 32768)")
    if audio.size == 0:
        raise InputError("the waveform has no samples")
    if not np.all(np.isfinite(audio)):
        raise InputError("the waveform holds NaN or infinite samples")
    return to_16k(audio, SAMPLE_RATE if sample_rate is None else sample_rate)


# --- windows ------------------------------------------------------------------------------------

def window_starts(num_samples: int, nb_samp: int, hop: int) -> np.ndarray:
    """Start offsets, in samples, of the windows that cover a recording.

    0, hop, 2 hop, ... while a whole window fits, then one more window ending at the last sample if
    those miss the tail, so every window is real audio and every sample is scored. A recording of at
    most ``nb_samp`` samples has the one window at 0 (repeat-padded when shorter).

    Returns:
        (W,) int64, ascending; the first is always 0, so window 0 is the published evaluation's input.
    """
    if num_samples <= nb_samp:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, num_samples - nb_samp + 1, hop, dtype=np.int64)
    if starts[-1] + nb_samp < num_samples:
        starts = np.append(starts, num_samples - nb_samp)
    return starts


def _window(x: np.ndarray, start: int, nb_samp: int) -> np.ndarray:
    """(nb_samp,) window of ``x`` at ``start``, repeat-padded when ``x`` is shorter than ``nb_samp``."""
    return pad_repeat(x[start:], nb_samp)  # window_starts keeps start + nb_samp within a longer x


# --- batched scoring ----------------------------------------------------------------------------

class _Pending:
    """One recording whose windows are waiting for logits (or the error that stopped it)."""

    def __init__(self, key, x: np.ndarray | None, starts: np.ndarray, error: InputError | None = None,
                 duration: float | None = None):
        self.key, self.x, self.starts, self.error = key, x, starts, error
        self.duration = x.shape[0] / SAMPLE_RATE if duration is None and x is not None else duration
        self.logits = np.zeros((len(starts), 2), dtype=np.float32)
        self.num_done = 0

    @property
    def done(self) -> bool:
        return self.error is not None or self.num_done == len(self.starts)

    def result(self, segments: bool) -> ScoreResult | InputError:
        if self.error is not None:
            return self.error
        if not np.all(np.isfinite(self.logits)):  # else NaN would pass for a decision: NaN > threshold is "spoof"
            name = "the waveform" if self.key is None else self.key
            name = printable_path(name) if isinstance(name, (str, os.PathLike)) else name
            return InputError(f"AASIST gave NaN or infinite logits for {name} (its input was finite: the weights, "
                              "or an overflow in bf16?)")
        scores = self.logits[:, 1]
        first = torch.softmax(torch.from_numpy(self.logits[0]), dim=0)
        stats = {}
        if segments:
            k = int(np.argmin(scores))
            stats = dict(num_windows=len(scores), window_mean=float(scores.mean()), window_min=float(scores[k]),
                         window_min_start=float(self.starts[k]) / SAMPLE_RATE)
        return ScoreResult(score=float(scores[0]), bonafide_prob=float(first[1]),
                           duration=self.duration, **stats)


def _run_batch(model: torch.nn.Module, batch: list[tuple[_Pending, int]], nb_samp: int, precision: str,
               pad_to: int | None) -> None:
    """Score one batch of (recording, window index) pairs and store each window's logits."""
    device = next(model.parameters()).device
    x = np.stack([_window(p.x, int(p.starts[i]), nb_samp) for p, i in batch])  # (B, nb_samp)
    logits = forward_logits(model, torch.from_numpy(x), device, precision, pad_to)  # (B, 2)
    for (p, i), row in zip(batch, logits.cpu().numpy()):
        p.logits[i] = row
        p.num_done += 1


def score_stream(model: torch.nn.Module, recordings: Iterable[tuple[object, np.ndarray | InputError]],
                 segments: bool = False, nb_samp: int | None = None, hop: int | None = None,
                 batch_size: int = 8, precision: str = "fp32") -> Iterator[tuple[object, ScoreResult | InputError]]:
    """Score many recordings in batches of windows that may span recordings; results come in input order.

    Args:
        model: AASIST; it is put in eval mode.
        recordings: (key, waveform) pairs, waveform (T,) float32 at 16 kHz or an ``Audio`` (the first
            samples of a longer recording, for scoring without ``segments``), or (key, InputError) for a
            recording that could not be read: it is passed through as its result. Read lazily.
        segments: score every window (see ``window_starts``), not only the first.
        nb_samp: window length in samples (default: the model's, its config's ``model_config.nb_samp``).
        hop: window hop in samples with ``segments`` (default ``nb_samp // 2``, half-overlapping windows).
        batch_size: windows per forward pass (a compiled model always gets full batches).
        precision: "fp32" (the published numbers) or "bf16" (autocast).

    Yields:
        (key, ScoreResult or InputError), each as soon as all its windows are scored; an InputError also
        when the model's logits are NaN or infinite.
    """
    nb_samp = model.nb_samp if nb_samp is None else nb_samp
    hop = nb_samp // 2 if hop is None else hop
    if nb_samp <= 0 or hop <= 0 or batch_size <= 0:
        raise InputError(f"nb_samp, hop and batch_size must be positive, got {nb_samp}, {hop}, {batch_size}")
    model.eval()
    pad_to = batch_size if is_compiled(model) else None
    queue: list[_Pending] = []
    batch: list[tuple[_Pending, int]] = []
    for key, x in recordings:
        if isinstance(x, InputError):
            queue.append(_Pending(key, None, np.zeros(0, dtype=np.int64), error=x))
        else:
            duration = x.duration if isinstance(x, Audio) else None
            x = x.samples if isinstance(x, Audio) else x
            starts = window_starts(x.shape[0], nb_samp, hop) if segments else np.zeros(1, dtype=np.int64)
            queue.append(_Pending(key, x, starts, duration=duration))
            for i in range(len(starts)):
                batch.append((queue[-1], i))
                if len(batch) == batch_size:
                    _run_batch(model, batch, nb_samp, precision, pad_to)
                    batch = []
        while queue and queue[0].done:
            p = queue.pop(0)
            yield p.key, p.result(segments)
    if batch:
        _run_batch(model, batch, nb_samp, precision, pad_to)
    for p in queue:
        yield p.key, p.result(segments)


def score(model: torch.nn.Module, audio_or_path: str | os.PathLike | np.ndarray | torch.Tensor,
          sample_rate: int | None = None, segments: bool = False, nb_samp: int | None = None,
          hop: int | None = None, batch_size: int = 8, precision: str = "fp32") -> ScoreResult:
    """Score one recording with AASIST.

    Args:
        model: AASIST, e.g. from ``models.load_model``; it is put in eval mode.
        audio_or_path: a file soundfile reads (any rate, any channels), or a mono (T,) float waveform.
        sample_rate: the waveform's rate in Hz (default 16000); not allowed with a path (the file says).
        segments: also score the whole recording in ``nb_samp`` windows (hop ``hop``) and report the mean
            and lowest window score; ``score`` stays the first window's.
        nb_samp: window length in samples (default: the model's ``nb_samp``).
        hop: window hop in samples (default ``nb_samp // 2``).
        batch_size: windows per forward pass.
        precision: "fp32" (the published numbers) or "bf16" (autocast).

    Raises:
        InputError: unreadable file or bad waveform, the message naming the file and the reason; or NaN or
            infinite logits.
    """
    if isinstance(audio_or_path, (str, os.PathLike)):
        if sample_rate is not None:
            raise InputError("sample_rate is for waveform arrays; a file's own sample rate is used")
        # Without segments only the first window is scored: read only what it needs.
        x = read_any_audio(audio_or_path) if segments else read_audio_head(audio_or_path, nb_samp or model.nb_samp)
    else:
        x = _as_waveform(audio_or_path, sample_rate)
    [(_, result)] = score_stream(model, [(None, x)], segments, nb_samp, hop, batch_size, precision)
    if isinstance(result, InputError):
        raise result
    return result


def read_files(paths: Iterable[str | os.PathLike], num_samples: int | None = None
               ) -> Iterator[tuple[Path, np.ndarray | Audio | InputError]]:
    """(path, 16 kHz waveform or the InputError that says why it is unreadable), lazily, for ``score_stream``.
    With ``num_samples``, only each file's first ``num_samples`` samples, as an ``Audio`` (``read_audio_head``):
    enough to score without ``segments``, in memory that does not grow with the file's length.

    A file whose name is not UTF-8 is unreadable too: soundfile opens files by their UTF-8 name. So is a
    link to a file that does not exist.
    """
    for path in map(Path, paths):
        if printable_path(path) != os.fspath(path):
            yield path, InputError(f"cannot read audio file {printable_path(path)}: its name is not UTF-8, "
                                   "which soundfile cannot open; rename the file")
            continue
        if path.is_symlink() and not path.exists():
            yield path, InputError(f"cannot read audio file {printable_path(path)}: a link to "
                                   f"{printable_path(os.readlink(path))}, which does not exist")
            continue
        try:
            yield path, read_any_audio(path) if num_samples is None else read_audio_head(path, num_samples)
        except InputError as e:
            yield path, e


# --- many files: find, tabulate, write (scripts/infer.py) -------------------------------------------

WINDOW_FIELDS = ("num_windows", "window_mean", "window_min", "window_min_start_s")


def find_audio(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], int]:
    """Files to score: each file as given, each folder's audio files (by extension, recursively, sorted).

    A missing path is kept: ``read_files`` reports "not found" for it. A file found twice is kept once,
    where it first comes.

    Returns:
        the files, and the number of files in the folders skipped for their extension.

    Raises:
        InputError: there is nothing to score (only folders without audio files).
    """
    paths = [Path(p) for p in paths]
    found, skipped = [], 0
    for path in paths:
        if path.is_dir():
            # A link to a file that is gone is kept: read_files reports it, as any file it cannot read.
            files = sorted(p for p in path.rglob("*") if p.is_file() or (p.is_symlink() and not p.exists()))
            audio = [p for p in files if p.suffix.lower() in AUDIO_EXTENSIONS]
            skipped += len(files) - len(audio)
            found += audio
        else:
            found.append(path)
    if not found:
        raise InputError(f"no audio files found in {', '.join(map(printable_path, paths))} "
                         f"(extensions: {', '.join(sorted(AUDIO_EXTENSIONS))})")
    return list(dict.fromkeys(found)), skipped


def result_row(path: str | os.PathLike, result: ScoreResult | InputError, threshold: float,
               segments: bool, calibration=None) -> dict:
    """One output record of ``score_stream``'s result: score > ``threshold`` is "bonafide", else "spoof".
    With a ``utils.evaluation.calibration.Calibration``, the record also has "llr", the calibrated score.

    An unreadable file has None values and its reason in "error". With ``segments`` the record also has
    the ``WINDOW_FIELDS``. "path" is ``printable_path(path)``: it prints and encodes as UTF-8.
    """
    ok = isinstance(result, ScoreResult)
    record = {
        "path": printable_path(path),
        "duration_s": result.duration if ok else None,
        "score": result.score if ok else None,
        "bonafide_prob": result.bonafide_prob if ok else None,
        "decision": ("bonafide" if result.score > threshold else "spoof") if ok else None,
    }
    if calibration is not None:
        record["llr"] = float(calibration.apply(np.float64(result.score))) if ok else None
    if segments:
        stats = (result.num_windows, result.window_mean, result.window_min, result.window_min_start) if ok else ()
        record.update(zip(WINDOW_FIELDS, stats or (None,) * len(WINDOW_FIELDS)))
    record["error"] = None if ok else str(result)
    return record


def write_results(path: str | os.PathLike, records: list[dict], meta: dict) -> None:
    """``result_row`` records as JSON (``meta`` and a "files" list) if ``path`` ends in .json, else as CSV
    (one line per file, None as an empty field; ``meta`` is not written); whole or not at all.

    Raises:
        InputError: ``path`` cannot be written, or a value is NaN or infinite (which JSON cannot hold).
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        atomic_write_json(path, {**meta, "files": records})
        return
    with atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in records)
