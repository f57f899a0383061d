"""ASVspoof 2019 LA, the corpus AASIST was trained and published on: protocols, splits, score files with their
keys (``UTT_ID SOURCE KEY SCORE``, as the published clovaai/aasist code writes them) and the published
evaluation's figures (EER, the 2019 min t-DCF with the organisers' ASV scores, EER per attack).

Layout under the release root (``database_path``)::

    ASVspoof2019_LA_{train,dev,eval}/flac/<UTT_ID>.flac
    ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt
    ASVspoof2019_LA_asv_scores/ASVspoof2019.LA.asv.{dev,eval}.gi.trl.scores.txt
"""
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.errors import InputError
from utils.evaluation.score_files import (CM_LABELS, CMScores, check_unique_ids, compute_metrics, format_metrics,
                               read_asv_scores, read_cm_scores, write_cm_scores)

from .base import Corpus
from .common import Trials, join_scores, read_rows

PROTOCOL_COLUMNS = ("SPEAKER", "UTT_ID", "-", "ATTACK", "KEY")  # the third is "-" throughout 2019 LA; unused
_PROTOCOL_SUFFIX = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}


@dataclass(frozen=True)
class SplitPaths:
    """Where one split's audio, CM protocol and (dev/eval only) ASV scores lie."""

    audio_dir: Path
    protocol: Path
    asv_scores: Path | None


class ASVspoof2019LA(Corpus):
    """ASVspoof 2019 logical access: trains, selects and evaluates; the keys are a CM protocol
    (``SPEAKER UTT_ID - ATTACK KEY``), and a score file carries its keys, so it needs no other."""

    name = "asvspoof2019_la"
    splits = ("train", "dev", "eval")
    split_asv = True
    audio_dirs = ("ASVspoof2019_LA_eval/flac",)

    def paths(self, root, split: str) -> SplitPaths:
        """Standard paths of ``split`` ('train', 'dev' or 'eval') under the release ``root``."""
        if split not in self.splits:
            raise InputError(f"split must be one of {self.splits}, got {split!r}")
        root = Path(root)
        asv_scores = root / "ASVspoof2019_LA_asv_scores" / f"ASVspoof2019.LA.asv.{split}.gi.trl.scores.txt"
        return SplitPaths(
            audio_dir=root / f"ASVspoof2019_LA_{split}" / "flac",
            protocol=root / "ASVspoof2019_LA_cm_protocols" / f"ASVspoof2019.LA.cm.{_PROTOCOL_SUFFIX[split]}.txt",
            asv_scores=None if split == "train" else asv_scores,  # the organisers give no ASV scores for train
        )

    def read_keys(self, keys_path, subset: str | None = None) -> Trials:
        """A CM protocol, one trial per non-blank line, in file order; InputError naming the file and line for a
        line without five fields, a KEY other than bonafide/spoof, or a repeated UTT_ID."""
        self._subset(subset)
        if not Path(keys_path).is_file():
            raise InputError(f"cannot read protocol file {keys_path}: "
                             f"{'a folder' if Path(keys_path).is_dir() else 'no such file'}")
        rows = read_rows(keys_path, "protocol file", PROTOCOL_COLUMNS, empty="no entries in this")
        ids, labels = rows.column("UTT_ID"), rows.column("KEY")
        for line, key in zip(rows.lines, labels.tolist()):
            if key not in CM_LABELS:
                raise InputError(f"{rows.path}, line {line}: KEY must be 'bonafide' or 'spoof', got {key!r}")
        check_unique_ids(ids.tolist(), rows.lines, rows.path)
        return Trials(ids=ids, labels=labels, audio_ids=ids, path=rows.path,
                      factors={"speaker": rows.column("SPEAKER"), "attack": rows.column("ATTACK")})

    def split_trials(self, root, split: str) -> tuple[Trials, Path]:
        paths = self.paths(root, split)
        return self.read_keys(paths.protocol), paths.audio_dir

    def read_scored(self, scores_path, keys_path, subset: str | None = None) -> tuple[Trials, np.ndarray]:
        """A score file's own keys (``keys_path`` None), or a protocol's trials with the file's scores."""
        if keys_path is not None:
            return super().read_scored(scores_path, keys_path, subset)
        self._subset(subset)
        cm = read_cm_scores(scores_path)
        trials = Trials(ids=cm.utt_ids, labels=cm.keys, audio_ids=cm.utt_ids, factors={"attack": cm.sources},
                        path=str(scores_path))
        return trials, cm.scores

    def read_scores(self, path, trials: Trials) -> np.ndarray:
        rows = read_rows(path, "CM score file", ("UTT_ID", "SOURCE", "KEY", "SCORE"))
        return join_scores(rows, rows.column("UTT_ID"), trials, ("SCORE",))[:, 0]

    def read_extra(self, keys_path, trials: Trials, asv_scores=None):
        """The organisers' ASV scores (``SOURCE KEY SCORE``) for the min t-DCF, or None."""
        return None if asv_scores is None else read_asv_scores(asv_scores)

    def metrics(self, scores: np.ndarray, trials: Trials, extra=None) -> dict:
        """EER (%), its threshold, min t-DCF (None without ASV scores) and EER (%) per attack."""
        return compute_metrics(self._cm_scores(trials, trials.ids, scores), extra)

    def report(self, metrics: dict) -> str:
        return format_metrics(metrics)

    def write_scores(self, path, ids, scores, trials: Trials | None = None) -> None:
        """``UTT_ID SOURCE KEY SCORE`` lines; SOURCE and KEY come from ``trials``."""
        if trials is None:
            raise ValueError("a 2019 LA score file carries the keys: pass the trials")
        write_cm_scores(path, self._cm_scores(trials, ids, scores))

    def score_writer(self, trials: Trials):
        return functools.partial(self.write_scores, trials=trials)

    @staticmethod
    def _cm_scores(trials: Trials, ids, scores) -> CMScores:
        """``scores`` of the trials ``ids`` with their SOURCE and KEY, in the order of ``ids``."""
        row = {trial_id: i for i, trial_id in enumerate(trials.ids.tolist())}
        order = np.array([row[i] for i in np.asarray(ids, dtype=str).tolist()], dtype=np.int64)
        return CMScores(trials.ids[order], trials.factors["attack"][order], trials.labels[order], scores)
