"""Score files in, metrics out: the thin I/O layer around ``utils/evaluation/metrics.py``.

Two formats, space separated, one trial a line (blank lines are skipped):

- CM score file (what ``scripts/`` write and read): ``UTT_ID SOURCE KEY SCORE``, KEY ``bonafide`` or
  ``spoof``, SOURCE the attack id (``A07`` ...) or ``-``; e.g. ``LA_E_2834763 A11 spoof -3.41``.
- the organisers' ASV score file: ``SOURCE KEY SCORE``, KEY ``target``, ``nontarget`` or ``spoof``.

Every problem with a file raises ``InputError`` naming the file and, where there is one, the line.
The pieces every score or key file reader needs (``split_lines``, ``parse_score``, ``write_rows``) are
public: ``data_utils/corpora/`` reads and writes the other corpora's files with them.
"""
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from utils.errors import InputError
from utils.io import atomic_open, atomic_write_json
from utils.evaluation.metrics import check_scores, compute_eer, compute_min_tdcf, per_attack_eer

CM_LABELS = ("bonafide", "spoof")  # the KEY words of CM protocols and keys, in every corpus here
ASV_LABELS = ("target", "nontarget", "spoof")  # of ASV and SASV keys
CM_LAYOUT = "UTT_ID SOURCE KEY SCORE"
ASV_LAYOUT = "SOURCE KEY SCORE"


@dataclass(frozen=True)
class CMScores:
    """CM scores of N trials, one (N,) array per column (lists are accepted and converted).

    Attributes:
        utt_ids: (N,) str, e.g. "LA_E_2834763".
        sources: (N,) str, the attack id ("A07" ...) or "-" for bona fide.
        keys: (N,) str, "bonafide" or "spoof".
        scores: (N,) float64, higher for "more bona fide" (the published score is the bona fide logit).
    """

    utt_ids: np.ndarray
    sources: np.ndarray
    keys: np.ndarray
    scores: np.ndarray

    def __post_init__(self):
        for name in ("utt_ids", "sources", "keys"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=str).reshape(-1))
        object.__setattr__(self, "scores", np.asarray(self.scores, dtype=np.float64).reshape(-1))
        sizes = {self.utt_ids.size, self.sources.size, self.keys.size, self.scores.size}
        if len(sizes) != 1:
            raise InputError(f"CM scores: utt_ids, sources, keys and scores differ in length ({sorted(sizes)})")
        unknown = sorted(set(self.keys.tolist()) - set(CM_LABELS))
        if unknown:
            raise InputError(f"CM scores: unknown key(s) {unknown} (expected {' or '.join(CM_LABELS)})")


@dataclass(frozen=True)
class ASVScores:
    """ASV scores: (Nt,) target, (Nn,) non-target and (Na,) spoof trials, float64."""

    target: np.ndarray
    nontarget: np.ndarray
    spoof: np.ndarray


def first_few(items, k: int = 3) -> str:
    """The first ``k`` items, comma separated, and ", ..." if there are more: for messages."""
    items = list(items)
    return ", ".join(str(x) for x in items[:k]) + (", ..." if len(items) > k else "")


def split_line(line: str, delimiter: str | None = None) -> list[str]:
    """The fields of one line: split at any white space (``delimiter`` None) or at ``delimiter`` only
    (the ASVspoof 5 package's ``sep='\\t'``), each field stripped."""
    return line.split() if delimiter is None else [x.strip() for x in line.rstrip("\r\n").split(delimiter)]


def split_lines(path, numbered_lines: Iterable[tuple[int, str]], names: Sequence[str],
                delimiter: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank line of ``numbered_lines``, as they are read.

    Raises:
        InputError: naming ``path`` and the line, for a line that has not one field per name of ``names``.
    """
    for lineno, line in numbered_lines:
        if not line.strip():
            continue
        fields = split_line(line, delimiter)
        if len(fields) != len(names):
            raise InputError(f"{path}, line {lineno}: expected {len(names)} fields ({' '.join(names)}), "
                             f"found {len(fields)}: {line.strip()!r}")
        yield lineno, fields


def parse_score(token: str, path, lineno: int, column: str = "score") -> float:
    """``float(token)``; InputError naming the file, the line and the column if it is not a number."""
    try:
        return float(token)
    except ValueError:
        raise InputError(f"{path}, line {lineno}: {column} {token!r} is not a number") from None


def _read_rows(path, layout: str, keys: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """(1-based line number, fields) of every non-blank line; checks the field count and the KEY word."""
    key_col = layout.split().index("KEY")
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, fields in split_lines(path, enumerate(f, 1), layout.split()):
                if fields[key_col] not in keys:
                    raise InputError(
                        f"{path}, line {lineno}: unknown key {fields[key_col]!r} (expected {' or '.join(keys)})"
                    )
                rows.append((lineno, fields))
    except OSError as e:
        raise InputError(f"{path}: cannot read score file: {e.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (expected lines '{layout}')") from None
    if not rows:
        raise InputError(f"{path}: empty score file (expected lines '{layout}')")
    return rows


def _parse_scores(rows: list[tuple[int, list[str]]], path) -> np.ndarray:
    """(N,) float64 from the last field of each row; names the line of a token that is not a number."""
    return np.array([parse_score(fields[-1], path, lineno) for lineno, fields in rows], dtype=np.float64)


def repeated_ids(ids: Iterable[str], lines: Iterable[int]) -> list[tuple[str, int, int]]:
    """(id, line of its first occurrence, line of the repeat) for every repeated id, in file order: a repeated
    trial would be counted twice and move the EER."""
    first_line: dict[str, int] = {}
    repeated = []
    for trial_id, line in zip(ids, lines):
        if trial_id in first_line:
            repeated.append((trial_id, first_line[trial_id], line))
        else:
            first_line[trial_id] = line
    return repeated


def check_unique_ids(ids: Iterable[str], lines: Iterable[int], path) -> None:
    """InputError naming the first repeated utterance id and both its lines."""
    repeated = repeated_ids(ids, lines)
    if repeated:
        utt_id, first, line = repeated[0]
        raise InputError(f"{path}, line {line}: utterance id {utt_id!r} is already on line {first}")


def read_cm_scores(path: str | os.PathLike) -> CMScores:
    """Read a CM score file (``UTT_ID SOURCE KEY SCORE`` lines); each UTT_ID may occur once."""
    rows = _read_rows(path, CM_LAYOUT, CM_LABELS)
    check_unique_ids((fields[0] for _, fields in rows), (lineno for lineno, _ in rows), path)
    utt_ids, sources, keys, _ = zip(*(fields for _, fields in rows))
    return CMScores(utt_ids, sources, keys, _parse_scores(rows, path))


def read_asv_scores(path: str | os.PathLike) -> ASVScores:
    """Read an organisers' ASV score file (``SOURCE KEY SCORE`` lines); all three keys must occur."""
    rows = _read_rows(path, ASV_LAYOUT, ASV_LABELS)
    keys = np.array([fields[1] for _, fields in rows])
    scores = _parse_scores(rows, path)
    missing = [key for key in ASV_LABELS if not np.any(keys == key)]
    if missing:
        raise InputError(
            f"{path}: no {' or '.join(missing)} lines; the t-DCF needs target, nontarget and spoof ASV scores"
        )
    return ASVScores(*(scores[keys == key] for key in ASV_LABELS))


def write_cm_scores(path: str | os.PathLike, cm: CMScores) -> None:
    """Write ``cm`` as a CM score file, atomically; scores keep every digit (they read back equal).

    Raises:
        InputError: an id or source is empty or holds white space, or a score is NaN or inf (naming
            the first few utterances); no file is written then.
    """
    for name, values in (("utterance id", cm.utt_ids), ("source", cm.sources)):
        bad = [v for v in values.tolist() if v.split() != [v]]
        if bad:
            raise InputError(f"CM scores: {name} {bad[0]!r} is empty or holds white space")
    not_finite = cm.utt_ids[~np.isfinite(cm.scores)].tolist()
    if not_finite:
        raise InputError(f"CM scores: {len(not_finite)} of {cm.scores.size} scores are NaN or inf "
                         f"(utterances {first_few(not_finite)}); not writing {path}")
    write_rows(path, zip(cm.utt_ids.tolist(), cm.sources.tolist(), cm.keys.tolist(), cm.scores.tolist()))


def write_rows(path: str | os.PathLike, rows: Iterable[Sequence[str | float]], header: str | None = None,
               separator: str = " ") -> None:
    """Write ``rows`` atomically, one a line, their fields joined by ``separator``, after a ``header`` line
    if one is given; a number is written as its ``repr``, every digit kept, so that it reads back equal."""
    with atomic_open(path) as f:
        if header is not None:
            f.write(header + "\n")
        f.writelines(separator.join(v if isinstance(v, str) else repr(float(v)) for v in row) + "\n" for row in rows)


def compute_metrics(cm: CMScores, asv: ASVScores | None = None) -> dict:
    """EER, min t-DCF (None without ASV scores) and EER per attack of a set of CM scores.

    Returns:
        {"eer_percent": float, "eer_threshold": float (CM score at the EER point),
         "min_tdcf": float | None, "per_attack_eer_percent": {attack id: float}}
    """
    is_bonafide = cm.keys == "bonafide"
    bonafide = check_scores(cm.scores[is_bonafide], "CM bona fide")
    spoof = check_scores(cm.scores[~is_bonafide], "CM spoof")
    n_distinct = np.unique(cm.scores).size
    if n_distinct < 3:
        raise InputError(
            f"CM scores take only {n_distinct} distinct value(s); EER and t-DCF need soft scores "
            "(e.g. the bona fide logit), not hard decisions"
        )
    eer, threshold = compute_eer(bonafide, spoof)
    min_tdcf = None
    if asv is not None:
        min_tdcf = compute_min_tdcf(bonafide, spoof, asv.target, asv.nontarget, asv.spoof)
    return {
        "eer_percent": 100 * eer,
        "eer_threshold": threshold,
        "min_tdcf": min_tdcf,
        "per_attack_eer_percent": per_attack_eer(bonafide, spoof, cm.sources[~is_bonafide]),
    }


def format_metrics(metrics: dict) -> str:
    """EER, min t-DCF and the per-attack EER table of a ``compute_metrics`` dict, as evaluate.py prints them."""
    lines = [f"EER:        {metrics['eer_percent']:.9f} %  (CM threshold {metrics['eer_threshold']:.6g})"]
    if metrics["min_tdcf"] is None:
        lines.append("min t-DCF:  not computed (no ASV scores; pass --asv_scores)")
    else:
        lines.append(f"min t-DCF:  {metrics['min_tdcf']:.9f}")
    lines += ["", "attack   EER (%)"]
    lines += [f"{attack:<8} {eer:9.4f}" for attack, eer in metrics["per_attack_eer_percent"].items()]
    return "\n".join(lines)


def write_metrics_json(path: str | os.PathLike, metrics: dict) -> None:
    """Write the dict of ``compute_metrics`` as JSON, atomically (floats keep every digit)."""
    atomic_write_json(path, metrics)
