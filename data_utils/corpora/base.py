"""The interface every corpus offers (``Corpus``) and the report of its figures."""
from pathlib import Path

import numpy as np

from utils.errors import InputError

from .common import Trials, audio_dir


class Corpus:
    """What one corpus needs: override the class attributes and the methods that differ.

    Attributes:
        name: the registry key (``CORPORA[name]``).
        subsets: the subsets of its key file (first = default), or () for none.
        audio_dirs: folders under the unpacked release root holding the audio; the first is the standard
            one, the others are accepted where the standard one is absent.
        audio_suffix: appended to an audio id to make the file name.
        scores_audio: whether a countermeasure alone writes its score file (not so for SASV).
        splits: the splits training reads (``split_trials``), or () for an evaluation-only corpus.
        split_asv: whether its dev and eval splits have the organisers' ASV scores (a config's
            ``asv_score_path`` and ``dev_asv_score_path``) for the min t-DCF.
    """

    name = ""
    subsets: tuple[str, ...] = ()
    audio_dirs: tuple[str, ...] = ()
    audio_suffix = ".flac"
    scores_audio = True
    splits: tuple[str, ...] = ()
    split_asv = False

    def read_keys(self, keys_path, subset: str | None = None) -> Trials:
        """Every trial of the key file (all subsets: a score file must cover them); the metrics use ``subset``."""
        raise NotImplementedError

    def read_scores(self, path, trials: Trials) -> np.ndarray:
        """(N,) float64 CM scores in the order of ``trials``, higher = more bona fide; InputError (naming the
        file, the count and the first ids) for ids missing, extra or duplicated, or NaN/inf scores."""
        raise NotImplementedError

    def read_scored(self, scores_path, keys_path, subset: str | None = None) -> tuple[Trials, np.ndarray]:
        """The trials of ``keys_path`` and the scores of ``scores_path`` in their order."""
        if keys_path is None:
            raise InputError(f"--corpus {self.name} needs --keys (its keys as released)")
        trials = self.read_keys(keys_path, subset)
        return trials, self.read_scores(scores_path, trials)

    def read_extra(self, keys_path, trials: Trials, asv_scores=None):
        """Whatever ``metrics`` needs beside the CM scores (ASV scores), or None."""
        return None

    def metrics(self, scores: np.ndarray, trials: Trials, extra=None) -> dict:
        """The figures of the official package, and its tables (see ``data_utils/corpora/__init__.py``)."""
        raise NotImplementedError

    def report(self, metrics: dict) -> str:
        """The figures of ``metrics`` as ``evaluate.py`` prints them."""
        return format_corpus_metrics(metrics)

    def write_scores(self, path, ids, scores) -> None:
        """Write a score file in the official submission format, atomically."""
        raise NotImplementedError

    def score_writer(self, trials: Trials):
        """``write(path, ids, scores)`` for the scores of ``trials``' audio (``write_scores``, for a format
        that needs no more than the ids)."""
        return self.write_scores

    def audio_paths(self, root, audio_ids) -> list[Path]:
        """The audio files of ``audio_ids`` (``Trials.audio_ids``) under the unpacked release ``root`` (its
        audio folder looked up once)."""
        folder = Path(root) / audio_dir(root, self.audio_dirs)
        return [folder / f"{audio_id}{self.audio_suffix}" for audio_id in audio_ids]

    def split_trials(self, root, split: str) -> tuple[Trials, Path]:
        """A training split's trials (factors ``speaker`` and ``attack``, "-" for bona fide) and its audio
        folder, for training and model selection; InputError for a corpus without training splits."""
        raise InputError(f"corpus {self.name!r} has no training splits (evaluate on it with "
                         f"evaluate.py --corpus {self.name} --keys ...)")

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise InputError(f"{self.name} has no {split!r} split (splits: {', '.join(self.splits)})")

    def _subset(self, subset: str | None) -> str | None:
        if not self.subsets:
            if subset is not None:
                raise InputError(f"{self.name} has no subsets (got subset {subset!r})")
            return None
        subset = self.subsets[0] if subset is None else subset
        if subset not in self.subsets:
            raise InputError(f"{self.name}: subset must be one of {', '.join(self.subsets)}, got {subset!r}")
        return subset


_FIGURES = (("eer_percent", "EER (%)", ".6f"), ("min_tdcf", "min t-DCF", ".6f"), ("min_dcf", "minDCF", ".5f"),
            ("act_dcf", "actDCF", ".5f"), ("cllr_bits", "Cllr (bits)", ".5f"), ("a_dcf", "a-DCF", ".5f"),
            ("t_eer_percent", "t-EER (%)", ".5f"))


def format_corpus_metrics(metrics: dict) -> str:
    """The pooled figures of ``evaluate_score_file``, then each table (rows x columns, "-" = not computed)."""
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)
    lines = [f"corpus: {metrics.get('corpus')}" + (f", subset {metrics['subset']}" if metrics.get("subset") else "")]
    lines += [f"{label + ':':<13}{fmt(metrics[key], spec)}" for key, label, spec in _FIGURES if key in metrics]
    if "calibrated" in metrics:
        lines.append("calibrated:  " + ", ".join(f"{label} {fmt(metrics['calibrated'][key], spec)}"
                                                for key, label, spec in _FIGURES if key in metrics["calibrated"]))
    for key, values in metrics.get("tables", {}).items():
        label, spec = next(((lab, sp) for k, lab, sp in _FIGURES if k == key), (key, ".4f"))
        columns = ["" if c is None else str(c) for c in values["columns"]]
        width = max([8, *(len(c) for c in columns)]) + 1
        lines += ["", f"{label} per condition (rows: attack or vocoder; columns: codec or compression)",
                  " " * 16 + "".join(f"{c:>{width}}" for c in columns)]
        for row, cells in zip(values["rows"], values["values"]):
            lines.append(f"{str(row):<16}" + "".join(f"{fmt(v, '.3f'):>{width}}" for v in cells))
    return "\n".join(lines)
