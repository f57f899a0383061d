"""Evaluation corpora beyond ASVspoof 2019 LA: their keys, score files, audio paths and official metrics.

One class per corpus, registered in ``CORPORA`` under its name:

=================== ============================================ ================================ ===================
name                keys (as released)                           score file (one row per trial)   figures
=================== ============================================ ================================ ===================
``asvspoof2021_la`` ``keys/LA/{CM,ASV}/trial_metadata.txt`` +    ``trial score``                  EER, min t-DCF
                    ``keys/LA/ASV/ASVTorch_Kaldi/score.txt``                                      (revised), tables
``asvspoof2021_df`` ``keys/DF/CM/trial_metadata.txt``            ``trial score``                  EER, table
``in_the_wild``     ``release_in_the_wild/meta.csv``             ``file score``                   EER
``asvspoof5``       ``ASVspoof5.eval.track_1.tsv`` (or the       ``filename<TAB>cm-score``        minDCF, EER, Cllr,
                    package's ``cm_key.tsv`` / full key)         with that header                 actDCF, tables
``asvspoof5_sasv``  ``ASVspoof5.eval.track_2.trial.tsv`` (or     ``spk filename cm-score          a-DCF, min t-DCF,
                    the package's ``sasv_key.tsv`` / full key)   asv-score sasv-score`` (TAB)     t-EER, tables
=================== ============================================ ================================ ===================

Every corpus has the same few methods: ``read_keys(keys_path, subset)`` -> ``Trials``;
``read_scores(path, trials)`` -> scores aligned with the trials (a file that does not match the keys is
refused with an ``InputError`` naming the file, the count and the first ids); ``metrics(scores, trials,
extra)`` -> the figures of the official evaluation package, to the digit; ``audio_paths(root, audio_ids)``
and ``write_scores(path, ids, scores)`` for scoring the audio. ``evaluate_score_file`` chains them.

Figures use these JSON names: ``eer_percent``, ``min_tdcf``, ``min_dcf``, ``act_dcf``, ``cllr_bits``,
``a_dcf``, ``t_eer_percent``; ``tables`` holds one table per figure, ``{"rows", "columns", "values"}``
with rows = attack (or vocoder), columns = codec (or compression), and the pooled condition where the
official table puts it (last for 2021, first for ASVspoof 5). A figure or cell that the official code
would not compute (a condition without bona fide or spoof trials, gives NaN) or would stop the whole run on
(fewer than 3 distinct CM scores, ...) is ``None``. The maths lives in ``utils/metrics.py``; the formats
and the official rules are in ``CORPORA_SPEC.md`` (sections A-C).
"""
import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.errors import InputError
from utils.metrics import (
    ASV5_PFA_NON,
    ASV5_PFA_SPOOF,
    ASV5_PMISS,
    asv_error_rates,
    check_soft_scores,
    compute_a_dcf,
    compute_act_dcf,
    compute_cllr,
    compute_eer,
    compute_min_dcf,
    compute_min_tdcf_revised,
    compute_t_eer,
    compute_tdcf_c012,
)
from utils.score_files import first_few, parse_score, split_line, split_lines, write_rows

CM_LABELS = ("bonafide", "spoof")
SASV_LABELS = ("target", "nontarget", "spoof")
MISSING = "-"  # an ASVspoof 5 SASV score file's placeholder for a score the system does not give


# ---------------------------------------------------------------------------------------------------------
# Trials and the shared readers
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trials:
    """The trials of a key file, in file order (N of them, all subsets).

    Attributes:
        ids: (N,) str, the id a score file gives a trial (SASV: ``"spk filename"``).
        labels: (N,) str, ``bonafide``/``spoof`` (SASV and 2021 ASV keys: ``target``/``nontarget``/``spoof``).
        audio_ids: (N,) str, the audio file of each trial, for ``Corpus.audio_paths``.
        factors: {name: (N,) str}, the conditions of the official tables (``attack``, ``codec``,
            ``vocoder``, ``compression``, ``subset``, ...) that the key file gives.
        in_subset: (N,) bool, the trials the metrics use; a score file must still cover all N.
        subset: the chosen subset, or None for a corpus without subsets.
        path: the key file, for messages.
    """

    ids: np.ndarray
    labels: np.ndarray
    audio_ids: np.ndarray
    factors: dict = field(default_factory=dict)
    in_subset: np.ndarray | None = None
    subset: str | None = None
    path: str = ""

    def __post_init__(self):
        for name in ("ids", "labels", "audio_ids"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=str).reshape(-1))
        object.__setattr__(self, "factors", {k: np.asarray(v, dtype=str) for k, v in self.factors.items()})
        if self.in_subset is None:
            object.__setattr__(self, "in_subset", np.ones(self.ids.size, dtype=bool))
        sizes = {self.ids.size, self.labels.size, self.audio_ids.size, self.in_subset.size,
                 *(v.size for v in self.factors.values())}
        if len(sizes) != 1:
            raise ValueError(f"Trials: columns differ in length ({sorted(sizes)})")

    def __len__(self) -> int:
        return self.ids.size


@dataclass(frozen=True)
class _Rows:
    """The non-blank lines of a text table: column names, 1-based line numbers, fields."""

    path: str
    names: tuple[str, ...]
    lines: list[int]
    fields: list[list[str]]

    def column(self, name: str) -> np.ndarray:
        i = self.names.index(name)
        return np.array([f[i] for f in self.fields], dtype=str)

    def has(self, name: str) -> bool:
        return name in self.names

    def select(self, keep: np.ndarray) -> "_Rows":
        """The rows where ``keep`` (M,) bool is True."""
        return _Rows(self.path, self.names, [n for n, k in zip(self.lines, keep) if k],
                     [f for f, k in zip(self.fields, keep) if k])


def _read_rows(path, what: str, columns: tuple[str, ...] | None = None, *, header: bool = False,
               required: tuple[str, ...] = (), delimiter: str | None = None,
               rename: dict[str, str] | None = None) -> _Rows:
    """Read a table file, one row per non-blank line.

    Args:
        path: the file.
        what: what the file is, for messages ("CM score file").
        columns: without a header: the column names; every line must have exactly these fields.
        header: the first non-blank line names the columns; ``required`` must be among them.
        delimiter: None = any white space; "\\t" = TAB only (the ASVspoof 5 package's ``sep='\\t'``).
        rename: header names to rename (the package's aliases, e.g. ``trial_anon`` -> ``filename``).
    """
    path_s = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path_s}") from None
    except IsADirectoryError:
        raise InputError(f"{path_s} is a directory, not a {what}") from None
    except OSError as e:
        raise InputError(f"cannot read {what} {path_s}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path_s}: not a text file (expected a {what})") from None

    numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if header:
        if not numbered:
            raise InputError(f"{path_s}: empty {what} (expected a header naming {', '.join(required)})")
        head_line, head = numbered[0]
        names = tuple((rename or {}).get(x, x) for x in split_line(head, delimiter))
        missing = [c for c in required if c not in names]
        if missing:
            sep = "TAB" if delimiter == "\t" else "white space"
            raise InputError(f"{path_s}, line {head_line}: the header {head.strip()!r} lacks column(s) "
                             f"{', '.join(missing)} (expected a {sep}-separated header naming "
                             f"{', '.join(required)})")
        numbered = numbered[1:]
    else:
        names = tuple(columns)
    rows = list(split_lines(path_s, numbered, names, delimiter))
    if not rows:
        raise InputError(f"{path_s}: no rows in this {what}")
    return _Rows(path_s, names, [n for n, _ in rows], [fields for _, fields in rows])


def _check_key_rows(rows: _Rows, ids: np.ndarray, labels: np.ndarray, allowed: tuple[str, ...],
                    unique: bool = True) -> None:
    """Refuse a key file with an unknown label or (if ``unique``) a repeated trial id."""
    bad = np.flatnonzero(~np.isin(labels, allowed))
    if bad.size:
        shown = first_few(f"{ids[i]} (line {rows.lines[i]}: {str(labels[i])!r})" for i in bad)
        raise InputError(f"{rows.path}: {bad.size} trial(s) with an unknown label (expected "
                         f"{' / '.join(allowed)}): {shown}")
    if unique:
        _check_unique(rows, ids, "key file")


def _check_unique(rows: _Rows, ids: np.ndarray, what: str) -> None:
    first_line: dict[str, int] = {}
    repeated = []
    for i, trial_id in enumerate(ids.tolist()):
        if trial_id in first_line:
            repeated.append(f"{trial_id} (lines {first_line[trial_id]} and {rows.lines[i]})")
        else:
            first_line[trial_id] = rows.lines[i]
    if repeated:
        raise InputError(f"{rows.path}: {len(repeated)} duplicated trial id(s) in this {what}: "
                         f"{first_few(repeated)}")


def _parse_score(token: str, rows: _Rows, i: int, column: str, allow_missing: bool) -> float:
    return np.nan if allow_missing and token == MISSING else parse_score(token, rows.path, rows.lines[i], column)


def _join_scores(rows: _Rows, ids: np.ndarray, trials: Trials, score_columns: tuple[str, ...],
                 allow_missing: bool = False) -> np.ndarray:
    """Scores of a score file in the order of ``trials``, refusing a file that does not match the keys.

    Args:
        rows: the score file's rows; ``ids``: (M,) the trial id of each row.
        score_columns: the K columns to read; ``allow_missing``: "-" is a missing score (NaN) there.

    Returns:
        (N, K) float64, row n = trial n.
    """
    tokens = [[fields[rows.names.index(c)] for c in score_columns] for fields in rows.fields]  # (M, K) str
    values = np.array([[_parse_score(t, rows, i, c, allow_missing) for t, c in zip(row, score_columns)]
                       for i, row in enumerate(tokens)]).reshape(len(tokens), len(score_columns))
    _check_unique(rows, ids, "score file")
    key_file = trials.path or "the keys"
    row_of = {trial_id: i for i, trial_id in enumerate(ids.tolist())}
    known = set(trials.ids.tolist())
    extra = [trial_id for trial_id in ids.tolist() if trial_id not in known]
    if extra:
        raise InputError(f"{rows.path}: {len(extra)} trial id(s) that are not in {key_file}: {first_few(extra)}")
    missing = [trial_id for trial_id in trials.ids.tolist() if trial_id not in row_of]
    if missing:
        raise InputError(f"{rows.path}: {len(missing)} of the {len(trials)} trials of {key_file} are missing "
                         f"(a score file needs every trial, all subsets): {first_few(missing)}")
    # A written "nan" or "inf" is refused; "-" (allow_missing) is the format's own "no score".
    written = np.array([[t != MISSING for t in row] for row in tokens]).reshape(values.shape)
    bad = np.flatnonzero(np.any(~np.isfinite(values) & (written | (not allow_missing)), axis=1))
    if bad.size:
        shown = first_few(f"{ids[i]} (line {rows.lines[i]})" for i in bad)
        raise InputError(f"{rows.path}: {bad.size} score(s) are NaN or inf: {shown}")
    return values[[row_of[trial_id] for trial_id in trials.ids.tolist()]]


def _check_finite_for_write(ids, scores: np.ndarray, path) -> None:
    bad = [i for i in range(len(ids)) if not np.all(np.isfinite(scores[i]))]
    if bad:
        raise InputError(f"{len(bad)} of {len(ids)} scores are NaN or inf (trials "
                         f"{first_few(ids[i] for i in bad)}); not writing {path}")


def _write_id_score_lines(path, ids, scores, header: str | None = None, separator: str = " ") -> None:
    """``id<separator>score`` lines after an optional header line; scores keep every digit (they read back
    equal). Refuses NaN or inf scores and ids that are empty or hold white space, writing nothing."""
    ids, scores = [str(i) for i in ids], np.asarray(scores, dtype=np.float64).reshape(-1)
    _check_finite_for_write(ids, scores, path)
    bad = [i for i in ids if i.split() != [i]]
    if bad:
        raise InputError(f"trial id {bad[0]!r} is empty or holds white space; not writing {path}")
    write_rows(path, zip(ids, scores.tolist()), header, separator)


# ---------------------------------------------------------------------------------------------------------
# Tables of conditions
# ---------------------------------------------------------------------------------------------------------

POOLED = None  # a table row or column over all values of its factor


def _condition_mask(trials: Trials, is_spoof: np.ndarray, row_factor: str, row_value: str | None,
                    col_factor: str, col_value: str | None) -> np.ndarray:
    """(N,) bool: the trials of one table cell, within the subset.

    The row factor (attack, vocoder) is a spoof-only factor, so it selects spoof trials and leaves every
    bona fide trial in; the column factor (codec, compression) selects both classes (both packages).
    """
    mask = trials.in_subset.copy()
    if col_value is not POOLED:
        mask &= trials.factors[col_factor] == col_value
    if row_value is not POOLED:
        mask &= (trials.factors[row_factor] == row_value) | ~is_spoof
    return mask


def _or_none(metric, *args):
    """``metric(*args)``, or None where the official code gives NaN or stops the run (InputError here)."""
    try:
        value = metric(*args)
    except InputError:
        return None
    return None if value is None or np.isnan(value) else value


def _table(rows: list[str], columns: list[str], values: list[list]) -> dict:
    return {"rows": rows, "columns": columns, "values": values}


# ---------------------------------------------------------------------------------------------------------
# The corpora
# ---------------------------------------------------------------------------------------------------------

class Corpus:
    """What one corpus needs: override the class attributes and the methods that differ.

    Attributes:
        name: the registry key (``CORPORA[name]``).
        subsets: the subsets of its key file (first = default), or () for none.
        audio_dirs: folders under the unpacked release root holding the audio; the first is the standard
            one, the others are accepted where the standard one is absent.
        audio_suffix: appended to an audio id to make the file name.
        scores_audio: whether a countermeasure alone writes its score file (not so for SASV).
    """

    name = ""
    subsets: tuple[str, ...] = ()
    audio_dirs: tuple[str, ...] = ()
    audio_suffix = ".flac"
    scores_audio = True

    def read_keys(self, keys_path, subset: str | None = None) -> Trials:
        """Every trial of the key file (all subsets: a score file must cover them); the metrics use ``subset``."""
        raise NotImplementedError

    def read_scores(self, path, trials: Trials) -> np.ndarray:
        """(N,) float64 CM scores in the order of ``trials``, higher = more bona fide; InputError (naming the
        file, the count and the first ids) for ids missing, extra or duplicated, or NaN/inf scores."""
        raise NotImplementedError

    def read_extra(self, keys_path, trials: Trials, asv_scores=None):
        """Whatever ``metrics`` needs beside the CM scores (ASV scores), or None."""
        return None

    def metrics(self, scores: np.ndarray, trials: Trials, extra=None) -> dict:
        """The figures of the official package, and its tables (see the module docstring)."""
        raise NotImplementedError

    def write_scores(self, path, ids, scores) -> None:
        """Write a score file in the official submission format, atomically."""
        raise NotImplementedError

    def audio_paths(self, root, audio_ids) -> list[Path]:
        """The audio files of ``audio_ids`` (``Trials.audio_ids``) under the unpacked release ``root`` (its
        audio folder looked up once)."""
        folder = Path(root) / _audio_dir(str(root), self.audio_dirs)
        return [folder / f"{audio_id}{self.audio_suffix}" for audio_id in audio_ids]

    def _subset(self, subset: str | None) -> str | None:
        if not self.subsets:
            if subset is not None:
                raise InputError(f"{self.name} has no subsets (got subset {subset!r})")
            return None
        subset = self.subsets[0] if subset is None else subset
        if subset not in self.subsets:
            raise InputError(f"{self.name}: subset must be one of {', '.join(self.subsets)}, got {subset!r}")
        return subset


def _audio_dir(root: str, candidates: tuple[str, ...]) -> str:
    """The first of ``candidates`` that exists under ``root`` (else the first, for the error message)."""
    return next((d for d in candidates if (Path(root) / d).is_dir()), candidates[0])


# ---- ASVspoof 2021 LA and DF ------------------------------------------------------------------------------

def _keys_2021_dir(keys_path, track: str) -> Path:
    """``keys/<track>`` from ``keys``, ``keys/<track>`` or ``keys/<track>/CM/trial_metadata.txt``."""
    p = Path(keys_path)
    if p.is_file():
        return p.parent.parent
    for candidate in (p / track, p):
        if (candidate / "CM" / "trial_metadata.txt").is_file():
            return candidate
    raise InputError(f"{p}: not an ASVspoof 2021 {track} keys folder (expected {p}/{track}/CM/trial_metadata.txt, "
                     f"as unpacked from {track}-keys-full.tar.gz)")


class _ASVspoof2021(Corpus):
    """Shared by LA and DF: ``trial score`` score files, subsets, 2021 tables (pooled last)."""

    track = ""
    key_columns: tuple[str, ...] = ()
    row_factor = ""  # spoof-only factor of the table rows
    row_values: tuple[str, ...] = ()
    row_labels: tuple[str, ...] = ()
    col_factor = ""
    col_values: tuple[str, ...] = ()
    col_labels: tuple[str, ...] = ()
    subsets = ("eval", "progress", "hidden")
    audio_dirs: tuple[str, ...] = ()

    def read_keys(self, keys_path, subset: str | None = None) -> Trials:
        """All trials of ``keys/<track>/CM/trial_metadata.txt``; the metrics use ``subset`` (default eval)."""
        subset = self._subset(subset)
        rows = _read_rows(_keys_2021_dir(keys_path, self.track) / "CM" / "trial_metadata.txt",
                          f"ASVspoof 2021 {self.track} CM key file", self.key_columns)
        ids, labels = rows.column("trial"), rows.column("label")
        _check_key_rows(rows, ids, labels, CM_LABELS)
        factors = {name: rows.column(name) for name in (self.row_factor, self.col_factor, "subset")}
        in_subset = factors["subset"] == subset
        if not in_subset.any():
            raise InputError(f"{rows.path}: no trial of subset {subset!r} (subsets found: "
                             f"{', '.join(sorted(set(factors['subset'].tolist())))})")
        return Trials(ids=ids, labels=labels, audio_ids=ids, factors=factors, in_subset=in_subset, subset=subset,
                      path=rows.path)

    def read_scores(self, path, trials: Trials) -> np.ndarray:
        rows = _read_rows(path, "CM score file", ("trial", "score"))
        return _join_scores(rows, rows.column("trial"), trials, ("score",))[:, 0]

    def write_scores(self, path, ids, scores) -> None:
        """``trial score`` lines, space separated, no header (what both 2021 packages read)."""
        _write_id_score_lines(path, ids, scores)

    def _cells(self, trials: Trials):
        """Yield (row index, column index, row value, column value, bona fide (N,) bool, spoof (N,) bool)
        over the official table, whose last row and column are the pooled conditions."""
        is_spoof = trials.labels == "spoof"
        for r, row_value in enumerate(self.row_values + (POOLED,)):
            for c, col_value in enumerate(self.col_values + (POOLED,)):
                mask = _condition_mask(trials, is_spoof, self.row_factor, row_value, self.col_factor, col_value)
                yield r, c, row_value, col_value, mask & ~is_spoof, mask & is_spoof

    def _empty_table(self) -> dict:
        rows, columns = list(self.row_labels) + ["Pooled"], list(self.col_labels) + ["Pooled"]
        return _table(rows, columns, [[None] * len(columns) for _ in rows])


def _counts(trials: Trials) -> dict:
    """Trials of each label within the subset, as {"n_bonafide": ..., "n_spoof": ...}."""
    return {f"n_{label}": int(np.sum(trials.in_subset & (trials.labels == label)))
            for label in sorted(set(trials.labels.tolist()), key=(CM_LABELS + SASV_LABELS).index)}


def _checked_2021(bonafide: np.ndarray, spoof: np.ndarray) -> bool:
    """Whether the 2021 package computes this cell: it gives NaN without bona fide or spoof trials, and stops
    the run (sys.exit) on fewer than 3 distinct scores."""
    if bonafide.size == 0 or spoof.size == 0:
        return False
    try:
        check_soft_scores(bonafide, spoof)
    except InputError:
        return False
    return True


@dataclass(frozen=True)
class AsvScores:
    """The organisers' ASV trials and scores (2021 LA), row n of ``scores`` = trial n of ``trials``."""

    trials: Trials
    scores: np.ndarray


class ASVspoof2021LA(_ASVspoof2021):
    """ASVspoof 2021 logical access: EER and revised min t-DCF, attack x codec (eval-package ``ConfigLA``)."""

    name = "asvspoof2021_la"
    track = "LA"
    key_columns = ("spk", "trial", "codec", "trans", "attack", "label", "trim", "subset")
    row_factor, col_factor = "attack", "codec"
    row_values = row_labels = tuple(f"A{i:02d}" for i in range(7, 20))
    col_values = ("none", "alaw", "pstn", "g722", "ulaw", "gsm", "opus")
    col_labels = ("C1", "C2", "C3", "C4", "C5", "C6", "C7")
    audio_dirs = ("ASVspoof2021_LA_eval/flac",)

    def read_extra(self, keys_path, trials: Trials, asv_scores=None) -> AsvScores:
        """The ASV key and the organisers' ASV scores (or ``asv_scores``, like ``--asv-score-file``).

        The package joins the two files by position (row i = row i), so a score file in another order
        is refused here, naming the line, instead of silently pairing the wrong scores.
        """
        asv_dir = _keys_2021_dir(keys_path, self.track) / "ASV"
        rows = _read_rows(asv_dir / "trial_metadata.txt", "ASVspoof 2021 LA ASV key file", self.key_columns)
        ids, labels = rows.column("trial"), rows.column("label")
        _check_key_rows(rows, ids, labels, SASV_LABELS, unique=False)  # a trial id recurs with other speakers
        score_rows = _read_rows(asv_scores or asv_dir / "ASVTorch_Kaldi" / "score.txt", "ASV score file",
                                ("asv_spk", "trial", "score"))
        if len(score_rows.fields) != len(rows.fields):
            raise InputError(f"{score_rows.path}: {len(score_rows.fields)} rows for the {len(rows.fields)} trials "
                             f"of {rows.path} (the two are joined row by row)")
        spk, score_ids = rows.column("spk"), score_rows.column("trial")
        mismatch = np.flatnonzero((score_rows.column("asv_spk") != spk) | (score_ids != ids))
        if mismatch.size:
            i = mismatch[0]
            raise InputError(f"{score_rows.path}, line {score_rows.lines[i]}: {mismatch.size} row(s) differ from "
                             f"{rows.path} (joined row by row; keep its order): here {str(score_ids[i])!r}, "
                             f"there {str(ids[i])!r}")
        scores = np.array([_parse_score(t, score_rows, i, "score", False)
                           for i, t in enumerate(score_rows.column("score").tolist())])
        bad = np.flatnonzero(~np.isfinite(scores))
        if bad.size:
            raise InputError(f"{score_rows.path}: {bad.size} ASV score(s) are NaN or inf: "
                             f"{first_few(f'{ids[i]} (line {score_rows.lines[i]})' for i in bad)}")
        factors = {"attack": rows.column("attack"), "codec": rows.column("codec"), "subset": rows.column("subset")}
        asv_trials = Trials(ids=ids, labels=labels, audio_ids=ids, factors=factors, path=rows.path,
                            in_subset=factors["subset"] == trials.subset, subset=trials.subset)
        return AsvScores(asv_trials, scores)

    def metrics(self, scores: np.ndarray, trials: Trials, extra: AsvScores | None = None) -> dict:
        """Pooled EER (%) and min t-DCF, and both per attack x codec (C0, C1, C2 recomputed per cell).

        Args:
            scores: (N,) CM scores of all trials; trials: from ``read_keys``; extra: from ``read_extra``
                (None: no min t-DCF).
        """
        eer, tdcf = self._empty_table(), self._empty_table()
        for r, c, attack, codec, bonafide, spoof in self._cells(trials):
            if not _checked_2021(scores[bonafide], scores[spoof]):
                continue
            eer["values"][r][c] = 100 * compute_eer(scores[bonafide], scores[spoof])[0]
            c012 = _c012_2021(extra, attack, codec)
            if c012 is not None:
                tdcf["values"][r][c] = _or_none(compute_min_tdcf_revised, scores[bonafide], scores[spoof], *c012)
        pooled_c012 = _c012_2021(extra, POOLED, POOLED)
        return {
            "corpus": self.name,
            "subset": trials.subset,
            **_counts(trials),
            "eer_percent": eer["values"][-1][-1],
            "min_tdcf": tdcf["values"][-1][-1],
            "tdcf_c012": list(pooled_c012) if pooled_c012 is not None else None,
            "tables": {"eer_percent": eer, **({"min_tdcf": tdcf} if extra is not None else {})},
        }


def _c012_2021(asv: AsvScores | None, attack: str | None, codec: str | None) -> tuple[float, float, float] | None:
    """C0, C1, C2 from the ASV trials of one cell: target and non-target by codec, spoof by codec and attack
    (``compute_tDCF_C012``); None (the package: NaN) where one of the three kinds has no trial."""
    if asv is None:
        return None
    is_spoof = asv.trials.labels == "spoof"
    cell = _condition_mask(asv.trials, is_spoof, "attack", attack, "codec", codec)
    target, nontarget, spoof = (asv.scores[cell & (asv.trials.labels == k)] for k in SASV_LABELS)
    if not (target.size and nontarget.size and spoof.size):
        return None
    pfa_asv, pmiss_asv, _, pfa_spoof_asv = asv_error_rates(target, nontarget, spoof)
    return compute_tdcf_c012(pfa_asv, pmiss_asv, pfa_spoof_asv)


class ASVspoof2021DF(_ASVspoof2021):
    """ASVspoof 2021 deepfake: EER only (no ASV), vocoder x compression (eval-package ``ConfigDF``)."""

    name = "asvspoof2021_df"
    track = "DF"
    key_columns = ("speaker", "trial", "compr", "source", "attack", "label", "trim", "subset", "vocoder",
                   "task", "team", "gender-pair", "language")
    row_factor, col_factor = "vocoder", "compr"
    row_values = ("traditional_vocoder", "waveform_concatenation", "neural_vocoder_autoregressive",
                  "neural_vocoder_nonautoregressive", "unknown")
    row_labels = ("Traditional", "Wav.Concat.", "Neural AR", "Neural non-AR", "Unknown")
    col_values = ("nocodec", "low_mp3", "high_mp3", "low_m4a", "high_m4a", "low_ogg", "high_ogg", "mp3m4a", "oggm4a")
    col_labels = tuple(f"C{i}" for i in range(1, 10))
    audio_dirs = ("ASVspoof2021_DF_eval/flac",)

    def metrics(self, scores: np.ndarray, trials: Trials, extra=None) -> dict:
        """Pooled EER (%) and EER per vocoder x compression."""
        eer = self._empty_table()
        for r, c, _, _, bonafide, spoof in self._cells(trials):
            if _checked_2021(scores[bonafide], scores[spoof]):
                eer["values"][r][c] = 100 * compute_eer(scores[bonafide], scores[spoof])[0]
        return {"corpus": self.name, "subset": trials.subset, **_counts(trials), "eer_percent": eer["values"][-1][-1],
                "tables": {"eer_percent": eer}}


# ---- In-the-Wild ------------------------------------------------------------------------------------------

class InTheWild(Corpus):
    """In-the-Wild (Mueller et al., Interspeech 2022): pooled EER with the ASVspoof ``compute_eer``.

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
        rows = _Rows(str(path), ("file", "speaker", "label"), lines=[n for n, _ in body],
                     fields=[[x.strip() for x in r] for _, r in body])
        ids, labels = rows.column("file"), rows.column("label")
        _check_key_rows(rows, ids, labels, tuple(self.LABELS))
        return Trials(ids=ids, labels=[self.LABELS[x] for x in labels.tolist()], audio_ids=ids, path=rows.path)

    def read_scores(self, path, trials: Trials) -> np.ndarray:
        rows = _read_rows(path, "In-the-Wild score file", ("file", "score"))
        return _join_scores(rows, rows.column("file"), trials, ("score",))[:, 0]

    def write_scores(self, path, ids, scores) -> None:
        """``file score`` lines, e.g. ``0.wav 1.2345``."""
        _write_id_score_lines(path, ids, scores)

    def metrics(self, scores: np.ndarray, trials: Trials, extra=None) -> dict:
        """Pooled EER (%) and its threshold (CM score)."""
        bonafide, spoof = scores[trials.labels == "bonafide"], scores[trials.labels == "spoof"]
        eer = threshold = None
        if bonafide.size and spoof.size:
            eer, threshold = compute_eer(bonafide, spoof)
            eer *= 100
        return {"corpus": self.name, "subset": None, **_counts(trials), "eer_percent": eer,
                "eer_threshold": threshold, "tables": {}}


# ---- ASVspoof 5 -------------------------------------------------------------------------------------------

_ASV5_RENAME = {"tar_spk_anon": "spk", "trial_anon": "filename"}  # the package's util.load_tsv aliases
_ASV5_PROTOCOL_T1 = ("SPEAKER_ID", "FLAC_FILE_NAME", "SPEAKER_GENDER", "CODEC", "CODEC_Q", "CODEC_SEED",
                     "ATTACK_TAG", "ATTACK_LABEL", "KEY", "TMP")
_ASV5_PROTOCOL_T2 = ("TARGET_SPEAKER_ID", "FLAC_FILE_NAME", "TARGET_GENDER", "ATTACK_LABEL", "ASV_KEY")


def _has_header(path, names: tuple[str, ...]) -> bool:
    """Whether the first non-blank line of ``path`` names one of ``names`` (a header'd package file)."""
    try:
        with open(path, encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
    except (OSError, UnicodeDecodeError):
        return False  # _read_rows reports it
    return any(name in first.split() for name in names)


def _asv5_tables(trials: Trials, is_spoof: np.ndarray, cell_metrics) -> dict:
    """The package's attack x codec tables: ``pooled`` first, then the sorted attacks / codecs found.

    ``cell_metrics(mask)`` gives {figure: value or None} for the (N,) bool trials of a cell. The package
    takes the attacks as the sorted attack labels minus the last one, assuming ``bonafide`` sorts last;
    here the attacks of the spoof trials, the same list. ``-`` (no codec) is a codec condition.
    """
    attacks = sorted(set(trials.factors["attack"][is_spoof].tolist())) if "attack" in trials.factors else []
    codecs = sorted(set(trials.factors["codec"].tolist())) if "codec" in trials.factors else []
    if not attacks and not codecs:
        return {}
    rows, columns = ["pooled"] + attacks, ["pooled"] + codecs
    tables: dict = {}
    for r, attack in enumerate([POOLED] + attacks):
        for c, codec in enumerate([POOLED] + codecs):
            mask = _condition_mask(trials, is_spoof, "attack", attack, "codec", codec)
            for figure, value in cell_metrics(mask).items():
                tables.setdefault(figure, _table(rows, columns, [[None] * len(columns) for _ in rows]))
                tables[figure]["values"][r][c] = value
    return tables


class ASVspoof5(Corpus):
    """ASVspoof 5 track 1 (CM): minDCF (primary), EER, Cllr, actDCF; attack x codec tables.

    Keys: the released protocol ``ASVspoof5.eval.track_1.tsv`` (10 space-separated columns, no header),
    or the package's header'd ``cm_key.tsv`` (``filename cm-label``, no tables) or full key (with
    ``attack_anon`` and ``codec``). Score file: the package's ``filename<TAB>cm-score`` with that header;
    scores should be calibrated LLRs for actDCF and Cllr to mean anything.
    """

    name = "asvspoof5"
    audio_dirs = ("flac_E_eval", "flac_E")
    # What training reads (config "corpus": "asvspoof5"): each split's protocol and audio folders under the
    # release root (the first folder that exists).
    SPLITS = {"train": ("ASVspoof5.train.tsv", ("flac_T",)), "dev": ("ASVspoof5.dev.track_1.tsv", ("flac_D",)),
              "eval": ("ASVspoof5.eval.track_1.tsv", ("flac_E_eval", "flac_E"))}

    def split_protocol(self, root, split: str) -> tuple[list[tuple[str, str, str, str]], Path, Path]:
        """A split's protocol rows as ``(speaker, utterance id, attack or "-", key)``, the protocol file and
        the audio folder, for training and model selection as on 2019 LA."""
        if split not in self.SPLITS:
            raise InputError(f"{self.name} has no {split!r} split (splits: {', '.join(self.SPLITS)})")
        protocol, folders = self.SPLITS[split]
        rows = _read_rows(Path(root) / protocol, "ASVspoof 5 protocol", _ASV5_PROTOCOL_T1)
        ids, labels, attacks = rows.column("FLAC_FILE_NAME"), rows.column("KEY"), rows.column("ATTACK_LABEL")
        _check_key_rows(rows, ids, labels, CM_LABELS)
        attacks = np.where(attacks == "bonafide", "-", attacks)  # 2019's SOURCE column: "-" for bona fide
        entries = list(zip(rows.column("SPEAKER_ID").tolist(), ids.tolist(), attacks.tolist(), labels.tolist()))
        return entries, Path(rows.path), Path(root) / _audio_dir(str(root), folders)

    def read_keys(self, keys_path, subset: str | None = None) -> Trials:
        self._subset(subset)
        if _has_header(keys_path, ("filename", "trial_anon")):
            rows = _read_rows(keys_path, "ASVspoof 5 CM key file", header=True, required=("filename", "cm-label"),
                              rename=_ASV5_RENAME | {"cm_label": "cm-label"})
            ids, labels = rows.column("filename"), rows.column("cm-label")
            factors = {name: rows.column(column) for name, column in (("attack", "attack_anon"), ("codec", "codec"))
                       if rows.has(column)}
        else:
            rows = _read_rows(keys_path, "ASVspoof 5 track 1 protocol", _ASV5_PROTOCOL_T1)
            ids, labels = rows.column("FLAC_FILE_NAME"), rows.column("KEY")
            factors = {"attack": rows.column("ATTACK_LABEL"), "codec": rows.column("CODEC")}
        _check_key_rows(rows, ids, labels, CM_LABELS)
        return Trials(ids=ids, labels=labels, audio_ids=ids, factors=factors, path=rows.path)

    def read_scores(self, path, trials: Trials) -> np.ndarray:
        rows = _read_rows(path, "ASVspoof 5 CM score file", header=True, required=("filename", "cm-score"),
                          delimiter="\t", rename=_ASV5_RENAME)
        return _join_scores(rows, rows.column("filename"), trials, ("cm-score",))[:, 0]

    def write_scores(self, path, ids, scores) -> None:
        """``filename<TAB>cm-score`` with that header (the package's ``--cm`` file)."""
        _write_id_score_lines(path, ids, scores, header="filename\tcm-score", separator="\t")

    @staticmethod
    def _cell(bonafide: np.ndarray, spoof: np.ndarray) -> dict:
        """The four figures of one condition; all None without bona fide or spoof trials (package: NaN)."""
        if bonafide.size == 0 or spoof.size == 0:
            return {"min_dcf": None, "eer_percent": None, "cllr_bits": None, "act_dcf": None}
        return {
            "min_dcf": compute_min_dcf(bonafide, spoof),
            "eer_percent": 100 * compute_eer(bonafide, spoof)[0],
            "cllr_bits": compute_cllr(bonafide, spoof),
            "act_dcf": compute_act_dcf(bonafide, spoof),
        }

    def metrics(self, scores: np.ndarray, trials: Trials, extra=None) -> dict:
        """Pooled figures (``evaluation.py --m t1``) and the tables of ``evaluation_full.py --m t1``."""
        is_spoof = trials.labels == "spoof"

        def cell(mask: np.ndarray) -> dict:
            return self._cell(scores[mask & ~is_spoof], scores[mask & is_spoof])

        return {"corpus": self.name, "subset": None, **_counts(trials), **cell(trials.in_subset),
                "tables": _asv5_tables(trials, is_spoof, cell)}


class ASVspoof5SASV(Corpus):
    """ASVspoof 5 track 2 (SASV): a-DCF (primary), min t-DCF, t-EER; attack x codec tables.

    Keys: the released ``ASVspoof5.eval.track_2.trial.tsv`` (``TARGET_SPEAKER_ID FLAC_FILE_NAME
    TARGET_GENDER ATTACK_LABEL ASV_KEY``, no codec, so tables by attack only), or the package's header'd
    ``sasv_key.tsv`` / full key (``spk filename cm-label asv-label [attack_anon codec track_2_tag]``; rows
    tagged ``dummy`` are dropped as the package does). A trial is (speaker claimed, probe file); its id here
    is ``"spk filename"``. Score file: ``spk filename cm-score asv-score sasv-score``, TAB separated with
    that header; ``-`` in a whole column = no such score (a CM alone gives only ``cm-score``), and a figure
    that needs the missing column is None. Scores: (N, 3) = (cm, asv, sasv), NaN where missing.
    """

    name = "asvspoof5_sasv"
    audio_dirs = ("flac_E_eval", "flac_E")
    scores_audio = False
    SCORE_COLUMNS = ("cm-score", "asv-score", "sasv-score")

    def read_keys(self, keys_path, subset: str | None = None) -> Trials:
        self._subset(subset)
        if _has_header(keys_path, ("filename", "trial_anon")):
            rows = _read_rows(keys_path, "ASVspoof 5 SASV key file", header=True,
                              required=("spk", "filename", "asv-label"),
                              rename=_ASV5_RENAME | {"asv_label": "asv-label", "cm_label": "cm-label"})
            if rows.has("track_2_tag"):
                rows = rows.select(rows.column("track_2_tag") != "dummy")
            spk, files, labels = rows.column("spk"), rows.column("filename"), rows.column("asv-label")
            factors = {name: rows.column(column) for name, column in (("attack", "attack_anon"), ("codec", "codec"))
                       if rows.has(column)}
            if rows.has("cm-label"):
                wrong = np.flatnonzero(rows.column("cm-label") != np.where(labels == "spoof", "spoof", "bonafide"))
                if wrong.size:
                    i = wrong[0]
                    raise InputError(f"{rows.path}, line {rows.lines[i]}: {wrong.size} trial(s) whose cm-label "
                                     f"disagrees with asv-label (spoof <-> spoof, target/nontarget <-> bonafide)")
        else:
            rows = _read_rows(keys_path, "ASVspoof 5 track 2 trial list", _ASV5_PROTOCOL_T2)
            spk, files, labels = rows.column("TARGET_SPEAKER_ID"), rows.column("FLAC_FILE_NAME"), rows.column("ASV_KEY")
            factors = {"attack": rows.column("ATTACK_LABEL")}
        ids = np.char.add(np.char.add(spk, " "), files)
        _check_key_rows(rows, ids, labels, SASV_LABELS)
        return Trials(ids=ids, labels=labels, audio_ids=files, factors=factors, path=rows.path)

    def _read_sasv(self, path, trials: Trials, columns: tuple[str, ...], what: str,
                   allow_missing: bool = True) -> np.ndarray:
        """(N, len(columns)) scores of a header'd TAB-separated file keyed by (spk, filename); NaN = '-'."""
        rows = _read_rows(path, what, header=True, required=("spk", "filename"), delimiter="\t",
                          rename=_ASV5_RENAME)
        present = tuple(c for c in columns if rows.has(c))
        if not present:
            raise InputError(f"{rows.path}: the header names none of the score columns {', '.join(columns)}")
        ids = np.char.add(np.char.add(rows.column("spk"), " "), rows.column("filename"))
        values = _join_scores(rows, ids, trials, present, allow_missing=allow_missing)
        for k, column in enumerate(present):
            missing = np.isnan(values[:, k])
            if missing.any() and not missing.all():
                raise InputError(f"{rows.path}: {column} is '-' for {int(missing.sum())} of {missing.size} trials; "
                                 f"give every score or none (a whole column of '-')")
        out = np.full((len(trials), len(columns)), np.nan)
        out[:, [columns.index(c) for c in present]] = values
        return out

    def read_scores(self, path, trials: Trials) -> np.ndarray:
        """(N, 3) float64 (cm-score, asv-score, sasv-score) in the order of ``trials``; NaN = not given."""
        return self._read_sasv(path, trials, self.SCORE_COLUMNS, "ASVspoof 5 SASV score file")

    def read_extra(self, keys_path, trials: Trials, asv_scores=None) -> np.ndarray | None:
        """(N,) the organisers' ASV scores (``evaluation_full.py --asv_org``: ``spk filename asv-score``), or None."""
        if asv_scores is None:
            return None
        return self._read_sasv(asv_scores, trials, ("asv-score",), "organisers' ASV score file",
                               allow_missing=False)[:, 0]

    def write_scores(self, path, ids, scores) -> None:
        """The package's SASV score file; ``ids`` are ``"spk filename"``, ``scores`` (N,) CM scores (ASV
        and SASV columns written as ``-``) or (N, 3) (cm, asv, sasv)."""
        ids = [str(i) for i in ids]
        scores = np.asarray(scores, dtype=np.float64)
        scores = scores.reshape(-1, 1) if scores.ndim == 1 else scores
        _check_finite_for_write(ids, scores, path)
        bad = [i for i in ids if len(i.split()) != 2]
        if bad:
            raise InputError(f"SASV trial ids are 'spk filename'; got {bad[0]!r}; not writing {path}")
        rows = (trial_id.split() + row + [MISSING] * (3 - len(row)) for trial_id, row in zip(ids, scores.tolist()))
        write_rows(path, rows, header="\t".join(("spk", "filename") + self.SCORE_COLUMNS), separator="\t")

    @staticmethod
    def _cell(scores: np.ndarray, kind: dict, mask: np.ndarray, asv_org: np.ndarray | None) -> dict:
        """a-DCF, min t-DCF and t-EER of the trials in ``mask`` (all None without all three kinds of trial).

        min t-DCF: at the organisers' fixed ASV rates, or, given ``asv_org``, at the rates of their ASV
        scores in this cell, as ``evaluation_full.py --asv_org`` does.
        """
        cm, asv, sasv = scores[:, 0], scores[:, 1], scores[:, 2]
        tar, non, spf = (mask & kind[k] for k in SASV_LABELS)
        if not (tar.any() and non.any() and spf.any()):
            return {"a_dcf": None, "min_tdcf": None, "t_eer_percent": None}
        if asv_org is None:
            c012 = compute_tdcf_c012(ASV5_PFA_NON, ASV5_PMISS, ASV5_PFA_SPOOF)
        else:
            pfa_asv, pmiss_asv, pmiss_spoof_asv, _ = asv_error_rates(asv_org[tar], asv_org[non], asv_org[spf])
            # Quirk of evaluation_full.py, kept to match it: it passes Pmiss_spoof_asv where the
            # t-DCF wants Pfa_spoof_asv.
            c012 = compute_tdcf_c012(pfa_asv, pmiss_asv, pmiss_spoof_asv)
        return {
            "a_dcf": _or_none(compute_a_dcf, sasv[tar], sasv[non], sasv[spf]),
            "min_tdcf": _or_none(compute_min_tdcf_revised, cm[tar | non], cm[spf], *c012),
            "t_eer_percent": _or_none(compute_t_eer, cm[tar], cm[non], cm[spf], asv[tar], asv[non], asv[spf]),
        }

    def metrics(self, scores: np.ndarray, trials: Trials, extra: np.ndarray | None = None) -> dict:
        """Pooled figures (``evaluation.py --m t2_tandem``: fixed ASV rates) and the tables of
        ``evaluation_full.py --m t2_tandem`` (``extra`` = the ``--asv_org`` scores, else fixed rates).

        Args:
            scores: (N, 3) (cm, asv, sasv) from ``read_scores``; a NaN column makes its figures None.
        """
        kind = {k: trials.labels == k for k in SASV_LABELS}
        return {"corpus": self.name, "subset": None, **_counts(trials),
                **self._cell(scores, kind, trials.in_subset, None),
                "tables": _asv5_tables(trials, kind["spoof"], lambda mask: self._cell(scores, kind, mask, extra))}


CORPORA: dict[str, Corpus] = {c.name: c for c in (ASVspoof2021LA(), ASVspoof2021DF(), InTheWild(), ASVspoof5(),
                                                   ASVspoof5SASV())}


def get_corpus(name: str) -> Corpus:
    """The corpus registered as ``name``; InputError listing the names otherwise."""
    try:
        return CORPORA[name]
    except KeyError:
        raise InputError(f"unknown corpus {name!r} (known: {', '.join(CORPORA)})") from None


def get_audio_corpus(name: str) -> Corpus:
    """``get_corpus(name)`` for scoring audio with a model; InputError for a corpus whose score files a
    countermeasure alone does not write (ASVspoof 5 track 2: CM and ASV scores together)."""
    corpus = get_corpus(name)
    if not corpus.scores_audio:
        raise InputError(f"{name} score files combine CM and ASV scores: score the CM with --corpus asvspoof5, "
                         "then evaluate the SASV score file with scripts/evaluate.py --scores")
    return corpus


_CALIBRATED = ("act_dcf", "cllr_bits", "min_dcf", "eer_percent")  # minDCF and EER: unchanged, for reference


def evaluate_score_file(corpus: str, scores_path: str | os.PathLike, keys_path: str | os.PathLike,
                        subset: str | None = None, asv_scores: str | os.PathLike | None = None,
                        calibration=None) -> dict:
    """The official figures of a score file against a corpus's keys.

    Args:
        corpus: a name of ``CORPORA``.
        scores_path: the score file, in the corpus's format (one row per trial of the keys, any order).
        keys_path: the keys as released (2021: the ``keys`` folder; In-the-Wild: ``meta.csv``; ASVspoof 5:
            the protocol or the package's key file).
        subset: 2021 only: ``eval`` (default, the official figures), ``progress`` or ``hidden``.
        asv_scores: other ASV scores: 2021 LA, in place of ``keys/LA/ASV/ASVTorch_Kaldi/score.txt``;
            ASVspoof 5 track 2, the organisers' ``--asv_org`` file for the tables' min t-DCF.
        calibration: a ``utils.calibration.Calibration``: the pooled figures of the calibrated scores are
            added under "calibrated" (actDCF and Cllr change; minDCF and EER do not).

    Returns:
        {"corpus", "subset", counts, the corpus's figures, "tables"} (see the module docstring).

    Raises:
        InputError: naming the file, for anything wrong with the inputs.
    """
    handler = get_corpus(corpus)
    trials = handler.read_keys(keys_path, subset)
    scores = handler.read_scores(scores_path, trials)
    extra = handler.read_extra(keys_path, trials, asv_scores)
    metrics = handler.metrics(scores, trials, extra)
    if calibration is not None:
        if scores.ndim != 1:
            raise InputError(f"{corpus}: a calibration applies to CM score files, not to SASV files")
        after = handler.metrics(calibration.apply(scores), trials, extra)
        metrics["calibrated"] = {k: v for k, v in after.items() if k in _CALIBRATED}
    return metrics


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
    for key, table in metrics.get("tables", {}).items():
        label, spec = next(((lab, sp) for k, lab, sp in _FIGURES if k == key), (key, ".4f"))
        columns = ["" if c is None else str(c) for c in table["columns"]]
        width = max([8, *(len(c) for c in columns)]) + 1
        lines += ["", f"{label} per condition (rows: attack or vocoder; columns: codec or compression)",
                  " " * 16 + "".join(f"{c:>{width}}" for c in columns)]
        for row, values in zip(table["rows"], table["values"]):
            lines.append(f"{str(row):<16}" + "".join(f"{fmt(v, '.3f'):>{width}}" for v in values))
    return "\n".join(lines)
