"""The corpora by name, and the official figures of a score file against a corpus's keys."""
import os

import numpy as np

from utils.errors import InputError

from .asvspoof2019 import ASVspoof2019LA
from .asvspoof2021 import ASVspoof2021DF, ASVspoof2021LA
from .asvspoof5 import ASVspoof5, ASVspoof5SASV
from .base import Corpus
from .common import Trials
from .in_the_wild import InTheWild

# A new corpus: one module beside these, and its class here.
CORPORA: dict[str, Corpus] = {c.name: c for c in (ASVspoof2021LA(), ASVspoof2021DF(), InTheWild(), ASVspoof5(),
                                                   ASVspoof5SASV(), ASVspoof2019LA())}


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


def evaluate_scores(corpus: Corpus, trials: Trials, scores: np.ndarray, extra=None, calibration=None) -> dict:
    """The figures of ``scores`` ((N,) or, SASV, (N, 3), in the order of ``trials``), and with a
    ``calibration`` the pooled figures of the calibrated scores under "calibrated"."""
    metrics = corpus.metrics(scores, trials, extra)
    if calibration is not None:
        if scores.ndim != 1:
            raise InputError(f"{corpus.name}: a calibration applies to CM score files, not to SASV files")
        after = corpus.metrics(calibration.apply(scores), trials, extra)
        metrics["calibrated"] = {k: v for k, v in after.items() if k in _CALIBRATED}
    return metrics


def evaluate_score_file(corpus: str, scores_path: str | os.PathLike, keys_path: str | os.PathLike | None,
                        subset: str | None = None, asv_scores: str | os.PathLike | None = None,
                        calibration=None) -> dict:
    """The official figures of a score file against a corpus's keys.

    Args:
        corpus: a name of ``CORPORA``.
        scores_path: the score file, in the corpus's format (one row per trial of the keys, any order).
        keys_path: the keys as released (2021: the ``keys`` folder; In-the-Wild: ``meta.csv``; ASVspoof 5:
            the protocol or the package's key file; 2019 LA: a CM protocol, or None: its score files carry
            their keys).
        subset: 2021 only: ``eval`` (default, the official figures), ``progress`` or ``hidden``.
        asv_scores: ASV scores: 2019 LA, the organisers' file for the min t-DCF; 2021 LA, in place of
            ``keys/LA/ASV/ASVTorch_Kaldi/score.txt``; ASVspoof 5 track 2, the organisers' ``--asv_org`` file
            for the tables' min t-DCF.
        calibration: a ``utils.evaluation.calibration.Calibration``: the pooled figures of the calibrated scores are
            added under "calibrated" (actDCF and Cllr change; minDCF and EER do not).

    Returns:
        The corpus's figures (see ``data_utils/corpora/__init__.py``).

    Raises:
        InputError: naming the file, for anything wrong with the inputs.
    """
    handler = get_corpus(corpus)
    trials, scores = handler.read_scored(scores_path, keys_path, subset)
    extra = handler.read_extra(keys_path, trials, asv_scores)
    return evaluate_scores(handler, trials, scores, extra, calibration)
