"""In-the-Wild (Mueller et al., "Does audio deepfake detection generalize?", Interspeech 2022): pooled EER."""
import csv
from pathlib import Path

import numpy as np

from utils.errors import InputError
from utils.evaluation.metrics import compute_eer

from .base import Corpus
from .common import Rows, Trials, check_key_rows, counts, join_scores, read_rows, write_id_score_lines


class InTheWild(Corpus):
    """In-the-Wild: pooled EER with the ASVspoof ``compute_eer``.

    Keys: ``meta.csv`` with header ``file,speaker,label``, label ``bona-fide`` or ``spoof``. Score file
    (this project's convention; there is no official one): ``file score``, e.g. ``0.wav 1.2345``.
    """

    name = "in_the_wild"
    audio_dirs = ("release_in_the_wild",)
    audio_suffix = ""  # the file column already ends in .wav
    LABELS = {"bona-fide": "bonafide", "spoof": "spoof"}

    def read_keys(self, keys_path, subset: str | None = None) -> Trials:
        self._subset(subset)
        path = Path(keys_path)
        if path.is_dir():
            path = path / "meta.csv"
        try:
            with open(path, encoding="utf-8", newline="") as f:
                table = list(csv.reader(f))
        except FileNotFoundError:
            raise InputError(f"In-the-Wild key file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read In-the-Wild key file {path}: {e}") from None
        if not table or [x.strip() for x in table[0]][:3] != ["file", "speaker", "label"]:
            raise InputError(f"{path}, line 1: expected the header 'file,speaker,label' of meta.csv")
        body = [(n, r) for n, r in enumerate(table[1:], 2) if r]
        bad = [n for n, r in body if len(r) != 3]
        if bad:
            raise InputError(f"{path}, line {bad[0]}: expected 3 comma-separated fields (file,speaker,label)")
        rows = Rows(str(path), ("file", "speaker", "label"), lines=[n for n, _ in body],
                    fields=[[x.strip() for x in r] for _, r in body])
        ids, labels = rows.column("file"), rows.column("label")
        check_key_rows(rows, ids, labels, tuple(self.LABELS))
        return Trials(ids=ids, labels=[self.LABELS[x] for x in labels.tolist()], audio_ids=ids, path=rows.path)

    def read_scores(self, path, trials: Trials) -> np.ndarray:
        rows = read_rows(path, "In-the-Wild score file", ("file", "score"))
        return join_scores(rows, rows.column("file"), trials, ("score",))[:, 0]

    def write_scores(self, path, ids, scores) -> None:
        """``file score`` lines, e.g. ``0.wav 1.2345``."""
        write_id_score_lines(path, ids, scores)

    def metrics(self, scores: np.ndarray, trials: Trials, extra=None) -> dict:
        """Pooled EER (%) and its threshold (CM score)."""
        bonafide, spoof = scores[trials.labels == "bonafide"], scores[trials.labels == "spoof"]
        eer = threshold = None
        if bonafide.size and spoof.size:
            eer, threshold = compute_eer(bonafide, spoof)
            eer *= 100
        return {"corpus": self.name, "subset": None, **counts(trials), "eer_percent": eer,
                "eer_threshold": threshold, "tables": {}}
