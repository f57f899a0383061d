"""ASVspoof 2021 LA and DF (the asvspoof-challenge/2021 ``eval-package``): EER, the revised min t-DCF (LA),
and the official attack x codec (LA) and vocoder x compression (DF) tables, pooled row and column last."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.errors import InputError
from utils.evaluation.metrics import (asv_error_rates, check_soft_scores, compute_det_curve, compute_eer,
                           compute_min_tdcf_revised, compute_tdcf_c012)
from utils.evaluation.score_files import ASV_LABELS, CM_LABELS, first_few

from .base import Corpus
from .common import (POOLED, Trials, check_key_rows, condition_mask, counts, join_scores, or_none, parse_cell,
                     read_rows, table, write_id_score_lines)


def _keys_dir(keys_path, track: str) -> Path:
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

    def read_keys(self, keys_path, subset: str | None = None) -> Trials:
        """All trials of ``keys/<track>/CM/trial_metadata.txt``; the metrics use ``subset`` (default eval)."""
        subset = self._subset(subset)
        rows = read_rows(_keys_dir(keys_path, self.track) / "CM" / "trial_metadata.txt",
                         f"ASVspoof 2021 {self.track} CM key file", self.key_columns)
        ids, labels = rows.column("trial"), rows.column("label")
        check_key_rows(rows, ids, labels, CM_LABELS)
        factors = {name: rows.column(name) for name in (self.row_factor, self.col_factor, "subset")}
        in_subset = factors["subset"] == subset
        if not in_subset.any():
            raise InputError(f"{rows.path}: no trial of subset {subset!r} (subsets found: "
                             f"{', '.join(sorted(set(factors['subset'].tolist())))})")
        return Trials(ids=ids, labels=labels, audio_ids=ids, factors=factors, in_subset=in_subset, subset=subset,
                      path=rows.path)

    def read_scores(self, path, trials: Trials) -> np.ndarray:
        rows = read_rows(path, "CM score file", ("trial", "score"))
        return join_scores(rows, rows.column("trial"), trials, ("score",))[:, 0]

    def write_scores(self, path, ids, scores) -> None:
        """``trial score`` lines, space separated, no header (what both 2021 packages read)."""
        write_id_score_lines(path, ids, scores)

    def _cells(self, trials: Trials):
        """Yield (row index, column index, row value, column value, bona fide (N,) bool, spoof (N,) bool)
        over the official table, whose last row and column are the pooled conditions."""
        is_spoof = trials.labels == "spoof"
        for r, row_value in enumerate(self.row_values + (POOLED,)):
            for c, col_value in enumerate(self.col_values + (POOLED,)):
                mask = condition_mask(trials, is_spoof, self.row_factor, row_value, self.col_factor, col_value)
                yield r, c, row_value, col_value, mask & ~is_spoof, mask & is_spoof

    def _empty_table(self) -> dict:
        rows, columns = list(self.row_labels) + ["Pooled"], list(self.col_labels) + ["Pooled"]
        return table(rows, columns, [[None] * len(columns) for _ in rows])


def _computed(bonafide: np.ndarray, spoof: np.ndarray) -> bool:
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


def _base_id(trial_id: str) -> str:
    """A 2021 ASV id without the ASV key's decorations: ``LA_E_5013670-alaw-ita_tx`` (bona fide: ``-codec-trans``)
    and ``LA2021-LA_E_5658320`` (spoof) -> ``LA_E_5013670``, ``LA_E_5658320``; speakers likewise."""
    return trial_id.removeprefix("LA2021-").split("-", 1)[0]


def _min_tdcf_2021(bonafide: np.ndarray, spoof: np.ndarray, c0: float, c1: float, c2: float) -> float | None:
    """min t-DCF as the full package's ``eval_wrapper.get_mintDCF_eer`` computes it: with any weights, so a
    cell where the ASV is poor enough to make C1 negative still gets its number (the default cost,
    C0 + min(C1, C2), stays positive: C0 + C1 = Ptar Cmiss). None where that gives NaN."""
    if min(c0, c1, c2) >= 0:
        return or_none(compute_min_tdcf_revised, bonafide, spoof, c0, c1, c2)
    pmiss_cm, pfa_cm, _ = compute_det_curve(bonafide, spoof)
    with np.errstate(divide="ignore", invalid="ignore"):
        tdcf_norm = (c0 + c1 * pmiss_cm + c2 * pfa_cm) / (c0 + min(c1, c2))
    value = float(tdcf_norm[np.argmin(tdcf_norm)])
    return None if np.isnan(value) else value


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

        The package pairs the two files by position (row i = row i), so does this; a user's file may give
        its ids without the key's decorations (the package's notebook: ``LA_0007 LA_E_5013670 -9.836706``):
        ids are compared without them, and a file whose ids name other trials (another order) is refused,
        naming the line, instead of silently pairing the wrong scores.
        """
        asv_dir = _keys_dir(keys_path, self.track) / "ASV"
        rows = read_rows(asv_dir / "trial_metadata.txt", "ASVspoof 2021 LA ASV key file", self.key_columns)
        ids, labels = rows.column("trial"), rows.column("label")
        check_key_rows(rows, ids, labels, ASV_LABELS, unique=False)  # a trial id recurs with other speakers
        score_rows = read_rows(asv_scores or asv_dir / "ASVTorch_Kaldi" / "score.txt", "ASV score file",
                               ("asv_spk", "trial", "score"))
        if len(score_rows.fields) != len(rows.fields):
            raise InputError(f"{score_rows.path}: {len(score_rows.fields)} rows for the {len(rows.fields)} trials "
                             f"of {rows.path} (the two are joined row by row)")
        spk, score_spk, score_ids = rows.column("spk"), score_rows.column("asv_spk"), score_rows.column("trial")
        exact = (score_spk == spk) & (score_ids == ids)
        if not exact.all():
            base = np.vectorize(_base_id, otypes=[str])
            mismatch = np.flatnonzero((base(score_spk) != base(spk)) | (base(score_ids) != base(ids)))
            if mismatch.size:
                i = mismatch[0]
                raise InputError(f"{score_rows.path}, line {score_rows.lines[i]}: {mismatch.size} row(s) differ from "
                                 f"{rows.path} (joined row by row; keep its order): here {str(score_ids[i])!r}, "
                                 f"there {str(ids[i])!r}")
            print(f"note: {score_rows.path}: paired row by row with {rows.path}, as the official package pairs "
                  f"them; {int((~exact).sum())} of {exact.size} ids matched without the key's codec/"
                  f"transmission suffixes or LA2021- prefixes")
        scores = np.array([parse_cell(t, score_rows, i, "score")
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
            if not _computed(scores[bonafide], scores[spoof]):
                continue
            eer["values"][r][c] = 100 * compute_eer(scores[bonafide], scores[spoof])[0]
            c012 = _c012(extra, attack, codec)
            if c012 is not None:
                tdcf["values"][r][c] = _min_tdcf_2021(scores[bonafide], scores[spoof], *c012)
        pooled_c012 = _c012(extra, POOLED, POOLED)
        return {
            "corpus": self.name,
            "subset": trials.subset,
            **counts(trials),
            "eer_percent": eer["values"][-1][-1],
            "min_tdcf": tdcf["values"][-1][-1],
            "tdcf_c012": list(pooled_c012) if pooled_c012 is not None else None,
            "tables": {"eer_percent": eer, **({"min_tdcf": tdcf} if extra is not None else {})},
        }


def _c012(asv: AsvScores | None, attack: str | None, codec: str | None) -> tuple[float, float, float] | None:
    """C0, C1, C2 from the ASV trials of one cell: target and non-target by codec, spoof by codec and attack
    (``compute_tDCF_C012``); None (the package: NaN) where one of the three kinds has no trial."""
    if asv is None:
        return None
    is_spoof = asv.trials.labels == "spoof"
    cell = condition_mask(asv.trials, is_spoof, "attack", attack, "codec", codec)
    target, nontarget, spoof = (asv.scores[cell & (asv.trials.labels == k)] for k in ASV_LABELS)
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
            if _computed(scores[bonafide], scores[spoof]):
                eer["values"][r][c] = 100 * compute_eer(scores[bonafide], scores[spoof])[0]
        return {"corpus": self.name, "subset": trials.subset, **counts(trials), "eer_percent": eer["values"][-1][-1],
                "tables": {"eer_percent": eer}}
