"""What every corpus reads and writes with: ``Trials``, table files (``read_rows``), key checks, joining a
score file to its keys, id/score lines, and the cells of the official condition tables."""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.errors import InputError
from utils.evaluation.score_files import CM_LABELS, ASV_LABELS, first_few, parse_score, repeated_ids, split_line, split_lines, write_rows

SAMPLE_RATE = 16000  # Hz: the audio of every corpus here; AASIST's sinc front end is designed for it
MISSING = "-"  # an ASVspoof 5 SASV score file's placeholder for a score the system does not give
POOLED = None  # a table row or column over all values of its factor


@dataclass(frozen=True)
class Trials:
    """The trials of a key file, in file order (N of them, all subsets).

    Attributes:
        ids: (N,) str, the id a score file gives a trial (SASV: ``"spk filename"``).
        labels: (N,) str, ``bonafide``/``spoof`` (SASV and 2021 ASV keys: ``target``/``nontarget``/``spoof``).
        audio_ids: (N,) str, the audio file of each trial, for ``Corpus.audio_paths``.
        factors: {name: (N,) str}, the conditions of the official tables (``attack``, ``codec``,
            ``vocoder``, ``compression``, ``subset``, ``speaker``, ...) that the key file gives.
        in_subset: (N,) bool, the trials the metrics use; a score file must still cover all N.
        subset: the chosen subset, or None for a corpus without subsets.
        path: the key file, for messages.
        dropped: ids the key file holds but the figures leave out (ASVspoof 5's ``dummy`` trials): a score
            file may hold them; they are dropped after the join, as the official package drops them.
    """

    ids: np.ndarray
    labels: np.ndarray
    audio_ids: np.ndarray
    factors: dict = field(default_factory=dict)
    in_subset: np.ndarray | None = None
    subset: str | None = None
    path: str = ""
    dropped: frozenset = frozenset()

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
class Rows:
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

    def select(self, keep: np.ndarray) -> "Rows":
        """The rows where ``keep`` (M,) bool is True."""
        return Rows(self.path, self.names, [n for n, k in zip(self.lines, keep) if k],
                    [f for f, k in zip(self.fields, keep) if k])


def read_text(path, what: str) -> str:
    """The whole of a text file; InputError naming it if it is missing, a folder, unreadable or not text."""
    path_s = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path_s}") from None
    except IsADirectoryError:
        raise InputError(f"{path_s} is a directory, not a {what}") from None
    except OSError as e:
        raise InputError(f"cannot read {what} {path_s}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path_s}: not a text file (expected a {what})") from None


def read_rows(path, what: str, columns: tuple[str, ...] | None = None, *, header: bool = False,
              required: tuple[str, ...] = (), delimiter: str | None = None,
              rename: dict[str, str] | None = None, empty: str = "no rows in this") -> Rows:
    """Read a table file, one row per non-blank line.

    Args:
        path: the file.
        what: what the file is, for messages ("CM score file").
        columns: without a header: the column names; every line must have exactly these fields.
        header: the first non-blank line names the columns; ``required`` must be among them.
        delimiter: None = any white space; "\\t" = TAB only (the ASVspoof 5 package's ``sep='\\t'``).
        rename: header names to rename (the package's aliases, e.g. ``trial_anon`` -> ``filename``).
        empty: the message's words for a file without rows ("{path}: {empty} {what}").
    """
    path_s = str(path)
    numbered = [(n, line) for n, line in enumerate(read_text(path, what).splitlines(), 1) if line.strip()]
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
        raise InputError(f"{path_s}: {empty} {what}")
    return Rows(path_s, names, [n for n, _ in rows], [fields for _, fields in rows])


def has_header(path, names: tuple[str, ...]) -> bool:
    """Whether the first non-blank line of ``path`` names one of ``names`` (a header'd package file)."""
    try:
        with open(path, encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
    except (OSError, UnicodeDecodeError):
        return False  # read_rows reports it
    return any(name in first.split() for name in names)


def check_key_rows(rows: Rows, ids: np.ndarray, labels: np.ndarray, allowed: tuple[str, ...],
                   unique: bool = True) -> None:
    """Refuse a key file with an unknown label or (if ``unique``) a repeated trial id."""
    bad = np.flatnonzero(~np.isin(labels, allowed))
    if bad.size:
        shown = first_few(f"{ids[i]} (line {rows.lines[i]}: {str(labels[i])!r})" for i in bad)
        raise InputError(f"{rows.path}: {bad.size} trial(s) with an unknown label (expected "
                         f"{' / '.join(allowed)}): {shown}")
    if unique:
        check_unique(rows, ids, "key file")


def check_unique(rows: Rows, ids: np.ndarray, what: str) -> None:
    """InputError naming how many ids repeat and the first few, with both their lines."""
    repeated = repeated_ids(ids.tolist(), rows.lines)
    if repeated:
        raise InputError(f"{rows.path}: {len(repeated)} duplicated trial id(s) in this {what}: "
                         f"{first_few(f'{i} (lines {a} and {b})' for i, a, b in repeated)}")


def parse_cell(token: str, rows: Rows, i: int, column: str, allow_missing: bool = False) -> float:
    """The number in row ``i``'s ``column`` (NaN for ``-`` where ``allow_missing``)."""
    return np.nan if allow_missing and token == MISSING else parse_score(token, rows.path, rows.lines[i], column)


def join_scores(rows: Rows, ids: np.ndarray, trials: Trials, score_columns: tuple[str, ...],
                allow_missing: bool = False) -> np.ndarray:
    """Scores of a score file in the order of ``trials``, refusing a file that does not match the keys.

    Rows of ``trials.dropped`` ids are read and left out, as the official package drops them after its join.

    Args:
        rows: the score file's rows; ``ids``: (M,) the trial id of each row.
        score_columns: the K columns to read; ``allow_missing``: "-" is a missing score (NaN) there.

    Returns:
        (N, K) float64, row n = trial n.
    """
    tokens = [[fields[rows.names.index(c)] for c in score_columns] for fields in rows.fields]  # (M, K) str
    values = np.array([[parse_cell(t, rows, i, c, allow_missing) for t, c in zip(row, score_columns)]
                       for i, row in enumerate(tokens)]).reshape(len(tokens), len(score_columns))
    check_unique(rows, ids, "score file")
    key_file = trials.path or "the keys"
    row_of = {trial_id: i for i, trial_id in enumerate(ids.tolist())}
    known = set(trials.ids.tolist())
    extra = [trial_id for trial_id in ids.tolist() if trial_id not in known and trial_id not in trials.dropped]
    if extra:
        raise InputError(f"{rows.path}: {len(extra)} trial id(s) that are not in {key_file}: {first_few(extra)}")
    missing = [trial_id for trial_id in trials.ids.tolist() if trial_id not in row_of]
    if missing:
        raise InputError(f"{rows.path}: {len(missing)} of the {len(trials)} trials of {key_file} are missing "
                         f"(a score file needs every trial, all subsets): {first_few(missing)}")
    # A written "nan" or "inf" is refused; "-" (allow_missing) is the format's own "no score".
    written = np.array([[t != MISSING for t in row] for row in tokens]).reshape(values.shape)
    bad = np.flatnonzero(np.any(~np.isfinite(values) & (written | (not allow_missing)), axis=1))
    bad = [i for i in bad if ids[i] in known]
    if bad:
        shown = first_few(f"{ids[i]} (line {rows.lines[i]})" for i in bad)
        raise InputError(f"{rows.path}: {len(bad)} score(s) are NaN or inf: {shown}")
    return values[[row_of[trial_id] for trial_id in trials.ids.tolist()]]


def check_finite_for_write(ids, scores: np.ndarray, path) -> None:
    bad = [i for i in range(len(ids)) if not np.all(np.isfinite(scores[i]))]
    if bad:
        raise InputError(f"{len(bad)} of {len(ids)} scores are NaN or inf (trials "
                         f"{first_few(ids[i] for i in bad)}); not writing {path}")


def write_id_score_lines(path, ids, scores, header: str | None = None, separator: str = " ") -> None:
    """``id<separator>score`` lines after an optional header line; scores keep every digit (they read back
    equal). Refuses NaN or inf scores and ids that are empty or hold white space, writing nothing."""
    ids, scores = [str(i) for i in ids], np.asarray(scores, dtype=np.float64).reshape(-1)
    check_finite_for_write(ids, scores, path)
    bad = [i for i in ids if i.split() != [i]]
    if bad:
        raise InputError(f"trial id {bad[0]!r} is empty or holds white space; not writing {path}")
    write_rows(path, zip(ids, scores.tolist()), header, separator)


def check_id_words(trials: Trials, words: int = 1) -> None:
    """Refuse, before any scoring, a key whose ids a score file could not hold (white space inside an id)."""
    bad = [i for i in trials.ids.tolist() if len(i.split()) != words or i != " ".join(i.split())]
    if bad:
        raise InputError(f"{trials.path}: trial id {bad[0]!r} is empty or holds white space; a score file "
                         f"cannot hold it")


def counts(trials: Trials) -> dict:
    """Trials of each label within the subset, as {"n_bonafide": ..., "n_spoof": ...}."""
    return {f"n_{label}": int(np.sum(trials.in_subset & (trials.labels == label)))
            for label in sorted(set(trials.labels.tolist()), key=(CM_LABELS + ASV_LABELS).index)}


def condition_mask(trials: Trials, is_spoof: np.ndarray, row_factor: str, row_value: str | None,
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


def or_none(metric, *args):
    """``metric(*args)``, or None where the official code gives NaN or stops the run (InputError here)."""
    try:
        value = metric(*args)
    except InputError:
        return None
    return None if value is None or np.isnan(value) else value


def table(rows: list[str], columns: list[str], values: list[list]) -> dict:
    return {"rows": rows, "columns": columns, "values": values}


def audio_dir(root, candidates: tuple[str, ...]) -> str:
    """The first of ``candidates`` that exists under ``root`` (else the first, for the error message)."""
    return next((d for d in candidates if (Path(root) / d).is_dir()), candidates[0])
