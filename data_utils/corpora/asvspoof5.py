"""ASVspoof 5 (the asvspoof-challenge/asvspoof5 ``evaluation-package``): track 1 (CM: minDCF, EER, Cllr, actDCF)
and track 2 (SASV: a-DCF, min t-DCF, t-EER), with the attack x codec tables of ``evaluation_full.py``."""
import dataclasses
from pathlib import Path

import numpy as np

from utils.errors import InputError
from utils.evaluation.metrics import (ASV5_PFA_NON, ASV5_PFA_SPOOF, ASV5_PMISS, asv_error_rates, compute_a_dcf,
                           compute_act_dcf, compute_cllr, compute_eer, compute_min_dcf, compute_min_tdcf_revised,
                           compute_t_eer, compute_tdcf_c012)
from utils.evaluation.score_files import ASV_LABELS, CM_LABELS, write_rows

from .base import Corpus
from .common import (MISSING, POOLED, Trials, audio_dir, check_finite_for_write, check_key_rows, condition_mask,
                     counts, has_header, join_scores, or_none, read_rows, table, write_id_score_lines)

_ASV5_RENAME = {"tar_spk_anon": "spk", "trial_anon": "filename"}  # the package's util.load_tsv aliases
_ASV5_PROTOCOL_T1 = ("SPEAKER_ID", "FLAC_FILE_NAME", "SPEAKER_GENDER", "CODEC", "CODEC_Q", "CODEC_SEED",
                     "ATTACK_TAG", "ATTACK_LABEL", "KEY", "TMP")
_ASV5_PROTOCOL_T2 = ("TARGET_SPEAKER_ID", "FLAC_FILE_NAME", "TARGET_GENDER", "ATTACK_LABEL", "ASV_KEY")


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
            mask = condition_mask(trials, is_spoof, "attack", attack, "codec", codec)
            for figure, value in cell_metrics(mask).items():
                tables.setdefault(figure, table(rows, columns, [[None] * len(columns) for _ in rows]))
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
    splits = tuple(SPLITS)

    def split_trials(self, root, split: str) -> tuple[Trials, Path]:
        """A split's protocol (the released 10-column file), for training and model selection as on 2019 LA."""
        self._check_split(split)
        protocol, folders = self.SPLITS[split]
        trials = self.read_keys(Path(root) / protocol)
        attacks = np.where(trials.labels == "bonafide", "-", trials.factors["attack"])  # 2019's "-" for bona fide
        trials = dataclasses.replace(trials, factors={**trials.factors, "attack": attacks})
        return trials, Path(root) / audio_dir(root, folders)

    def read_keys(self, keys_path, subset: str | None = None) -> Trials:
        self._subset(subset)
        if has_header(keys_path, ("filename", "trial_anon")):
            rows = read_rows(keys_path, "ASVspoof 5 CM key file", header=True, required=("filename", "cm-label"),
                              rename=_ASV5_RENAME | {"cm_label": "cm-label"})
            ids, labels = rows.column("filename"), rows.column("cm-label")
            factors = {name: rows.column(column) for name, column in (("attack", "attack_anon"), ("codec", "codec"))
                       if rows.has(column)}
        else:
            rows = read_rows(keys_path, "ASVspoof 5 track 1 protocol", _ASV5_PROTOCOL_T1)
            ids, labels = rows.column("FLAC_FILE_NAME"), rows.column("KEY")
            factors = {"attack": rows.column("ATTACK_LABEL"), "codec": rows.column("CODEC"),
                       "speaker": rows.column("SPEAKER_ID")}
        check_key_rows(rows, ids, labels, CM_LABELS)
        return Trials(ids=ids, labels=labels, audio_ids=ids, factors=factors, path=rows.path)

    def read_scores(self, path, trials: Trials) -> np.ndarray:
        rows = read_rows(path, "ASVspoof 5 CM score file", header=True, required=("filename", "cm-score"),
                          delimiter="\t", rename=_ASV5_RENAME)
        return join_scores(rows, rows.column("filename"), trials, ("cm-score",))[:, 0]

    def write_scores(self, path, ids, scores) -> None:
        """``filename<TAB>cm-score`` with that header (the package's ``--cm`` file)."""
        write_id_score_lines(path, ids, scores, header="filename\tcm-score", separator="\t")

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

        return {"corpus": self.name, "subset": None, **counts(trials), **cell(trials.in_subset),
                "tables": _asv5_tables(trials, is_spoof, cell)}


class ASVspoof5SASV(Corpus):
    """ASVspoof 5 track 2 (SASV): a-DCF (primary), min t-DCF, t-EER; attack x codec tables.

    Keys: the released ``ASVspoof5.eval.track_2.trial.tsv`` (``TARGET_SPEAKER_ID FLAC_FILE_NAME
    TARGET_GENDER ATTACK_LABEL ASV_KEY``, no codec, so tables by attack only), or the package's header'd
    ``sasv_key.tsv`` / full key (``spk filename cm-label asv-label [attack_anon codec track_2_tag]``; rows
    tagged ``dummy`` are dropped after the join, as the package does: a score file may hold them). A trial is
    (speaker claimed, probe file); its id here is ``"spk filename"``. Score file: ``spk filename cm-score asv-score sasv-score``, TAB separated with
    that header; ``-`` in a whole column = no such score (a CM alone gives only ``cm-score``), and a figure
    that needs the missing column is None. Scores: (N, 3) = (cm, asv, sasv), NaN where missing.
    """

    name = "asvspoof5_sasv"
    audio_dirs = ("flac_E_eval", "flac_E")
    scores_audio = False
    SCORE_COLUMNS = ("cm-score", "asv-score", "sasv-score")

    def read_keys(self, keys_path, subset: str | None = None) -> Trials:
        self._subset(subset)
        if has_header(keys_path, ("filename", "trial_anon")):
            rows = read_rows(keys_path, "ASVspoof 5 SASV key file", header=True,
                              required=("spk", "filename", "asv-label"),
                              rename=_ASV5_RENAME | {"asv_label": "asv-label", "cm_label": "cm-label"})
            dropped = frozenset()
            if rows.has("track_2_tag"):  # the package joins the scores to the full key, then drops these
                dummy = rows.column("track_2_tag") == "dummy"
                dropped = frozenset(np.char.add(np.char.add(rows.column("spk")[dummy], " "),
                                                rows.column("filename")[dummy]).tolist())
                rows = rows.select(~dummy)
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
            rows = read_rows(keys_path, "ASVspoof 5 track 2 trial list", _ASV5_PROTOCOL_T2)
            spk, files, labels = rows.column("TARGET_SPEAKER_ID"), rows.column("FLAC_FILE_NAME"), rows.column("ASV_KEY")
            factors, dropped = {"attack": rows.column("ATTACK_LABEL")}, frozenset()
        ids = np.char.add(np.char.add(spk, " "), files)
        check_key_rows(rows, ids, labels, ASV_LABELS)
        return Trials(ids=ids, labels=labels, audio_ids=files, factors=factors, path=rows.path, dropped=dropped)

    def _read_sasv(self, path, trials: Trials, columns: tuple[str, ...], what: str,
                   allow_missing: bool = True) -> np.ndarray:
        """(N, len(columns)) scores of a header'd TAB-separated file keyed by (spk, filename); NaN = '-'."""
        rows = read_rows(path, what, header=True, required=("spk", "filename"), delimiter="\t",
                          rename=_ASV5_RENAME)
        present = tuple(c for c in columns if rows.has(c))
        if not present:
            raise InputError(f"{rows.path}: the header names none of the score columns {', '.join(columns)}")
        ids = np.char.add(np.char.add(rows.column("spk"), " "), rows.column("filename"))
        values = join_scores(rows, ids, trials, present, allow_missing=allow_missing)
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
        check_finite_for_write(ids, scores, path)
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
        tar, non, spf = (mask & kind[k] for k in ASV_LABELS)
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
            "a_dcf": or_none(compute_a_dcf, sasv[tar], sasv[non], sasv[spf]),
            "min_tdcf": or_none(compute_min_tdcf_revised, cm[tar | non], cm[spf], *c012),
            "t_eer_percent": or_none(compute_t_eer, cm[tar], cm[non], cm[spf], asv[tar], asv[non], asv[spf]),
        }

    def metrics(self, scores: np.ndarray, trials: Trials, extra: np.ndarray | None = None) -> dict:
        """Pooled figures (``evaluation.py --m t2_tandem``: fixed ASV rates) and the tables of
        ``evaluation_full.py --m t2_tandem`` (``extra`` = the ``--asv_org`` scores, else fixed rates).

        Args:
            scores: (N, 3) (cm, asv, sasv) from ``read_scores``; a NaN column makes its figures None.
        """
        kind = {k: trials.labels == k for k in ASV_LABELS}
        return {"corpus": self.name, "subset": None, **counts(trials),
                **self._cell(scores, kind, trials.in_subset, None),
                "tables": _asv5_tables(trials, kind["spoof"], lambda mask: self._cell(scores, kind, mask, extra))}


