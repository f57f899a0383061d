"""Scores that are log-likelihood ratios: AASIST's logits as an LLR, and affine calibration of a score file.

actDCF and Cllr (ASVspoof 5, ``utils/evaluation/metrics.py``) read a score as a natural-log likelihood ratio
``ln p(x | bona fide) / p(x | spoof)``. AASIST's published score, the bona fide logit ``logits[:, 1]``, is not
one. Two ways to get one:

1. From both logits (``llr_from_logits``). The softmax posterior log-odds ``logits[:, 1] - logits[:, 0]`` is
   an LLR plus the log prior odds the network was trained under (``training_prior_log_odds``); subtracting
   those gives the LLR the network believes in. It is only as calibrated as the network (an over-confident
   network gives LLRs too large in magnitude), and score files hold ``logits[:, 1]`` alone.
2. From any score file with keys (``fit_calibration``): an affine map ``llr = scale * score + offset`` fitted
   on dev by prior-weighted logistic regression (Brümmer's linear calibration, as in the BOSARIS toolkit and
   WeDefense's calibration/fusion), then applied to eval. An increasing affine map keeps the order of the
   scores, so EER and minDCF do not move; actDCF and Cllr do.

Pure numpy/scipy from arrays; ``save_calibration`` / ``load_calibration`` are the JSON layer, and
``scripts/calibrate.py`` the command line.
"""
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from utils.config import CLASS_WEIGHTS, dataclass_from_dict
from utils.errors import InputError
from utils.io import atomic_write_json, printable_path, read_json
from utils.evaluation.metrics import DCF_C_FA, DCF_C_MISS, DCF_P_SPOOF, check_scores

# ASVspoof 2019 LA train protocol (ASVspoof2019.LA.cm.train.trn.txt): bona fide and spoof trials.
LA19_TRAIN_COUNTS = (2580, 22800)

# The ASVspoof 5 track 1 operating point as one effective prior of bona fide (the positive, "target" class):
# P_spoof = 0.05 with C_miss = 1 and C_fa = 10 costs the same as P_spoof = 0.5 / 1.45 = 0.345 with unit costs.
# Its Bayes threshold on LLRs, -logit(ASV5_P_TARGET), is the actDCF threshold -ln(1.9) = -0.6419.
ASV5_P_TARGET = DCF_C_MISS * (1 - DCF_P_SPOOF) / (DCF_C_MISS * (1 - DCF_P_SPOOF) + DCF_C_FA * DCF_P_SPOOF)


# ---------------------------------------------------------------------------------------------------------
# 1. LLRs from AASIST's two logits
# ---------------------------------------------------------------------------------------------------------

def training_prior_log_odds(n_bonafide: int, n_spoof: int,
                            class_weights: tuple[float, float] = CLASS_WEIGHTS) -> float:
    """Log prior odds of bona fide that a network trained with weighted cross-entropy builds into its logits.

    The loss ``sum_i -w[y_i] log q(y_i | x_i)`` over a training set of N_b bona fide and N_s spoof trials has
    expectation ``sum_c w[c] N_c E_{x ~ p(x|c)}[-log q(c | x)]``, which is smallest, for each x, at
    ``q(c | x) ∝ w[c] N_c p(x | c)``: the Bayes posterior under the prior ``P(c) ∝ w[c] N_c``. So::

        logits[1] - logits[0] = ln p(x|bona fide)/p(x|spoof) + ln (w[1] N_b) / (w[0] N_s)

    (PyTorch's ``reduction="mean"`` divides each batch by its sum of weights: that scales the steps, not the
    optimum.) For AASIST on 2019 LA: ``ln (0.9 * 2580) / (0.1 * 22800) = ln 1.0184 = 0.0183``; the published
    weights all but cancel the 1 : 8.8 class imbalance.

    Args:
        n_bonafide, n_spoof: trials of each class in the training protocol.
        class_weights: (w_spoof, w_bonafide), indexed by class label (0 spoof, 1 bona fide).

    Returns:
        ``ln(w[1] * n_bonafide / (w[0] * n_spoof))``, natural log.
    """
    w_spoof, w_bonafide = class_weights
    if n_bonafide <= 0 or n_spoof <= 0:
        raise ValueError(f"class counts must be positive, got {n_bonafide} bona fide and {n_spoof} spoof")
    if not (w_spoof > 0 and w_bonafide > 0):
        raise ValueError(f"class weights must be positive, got {tuple(class_weights)}")
    return math.log(w_bonafide * n_bonafide) - math.log(w_spoof * n_spoof)


def llr_from_logits(logits: np.ndarray, prior_log_odds: float) -> np.ndarray:
    """Natural-log LLRs (bona fide vs spoof) from AASIST's two-class logits.

    ``llr = (logits[:, 1] - logits[:, 0]) - prior_log_odds``: the softmax posterior log-odds of bona fide,
    less the log prior odds of training (``training_prior_log_odds``).

    Args:
        logits: (N, 2) logits, column 0 spoof, column 1 bona fide (the model's output order).
        prior_log_odds: ``ln P(bona fide) / P(spoof)`` that training built in.

    Returns:
        (N,) float64 LLRs.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise ValueError(f"logits must have shape (N, 2) (spoof, bona fide), got {logits.shape}")
    if not math.isfinite(prior_log_odds):
        raise ValueError(f"prior_log_odds must be finite, got {prior_log_odds}")
    return logits[:, 1] - logits[:, 0] - prior_log_odds


# ---------------------------------------------------------------------------------------------------------
# 2. Affine calibration
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Calibration:
    """``llr = scale * score + offset``, fitted on a dev set.

    Attributes:
        scale: > 0, LLR units (nats) per score unit.
        offset: nats.
        p_target: the effective prior of bona fide the fit weighted its errors by.
        fitted_on: what it was fitted on (the score file), for the record.
        n_bonafide, n_spoof: trials of each class in that fit.
        source: the file it was read from (``load_calibration``), for messages; not written to the file.
    """

    scale: float
    offset: float
    p_target: float
    fitted_on: str
    n_bonafide: int
    n_spoof: int
    source: str = field(default="", compare=False)

    def apply(self, scores) -> np.ndarray:
        """LLRs of ``scores`` (any shape), float64, same shape.

        Raises:
            InputError: naming the calibration file and key, where the map does not do in float64 what an
                increasing affine map does on these scores: an LLR beyond the float range (inf), or two
                different scores given one LLR (an offset so large that the scores vanish beside it), which
                would move the EER and minDCF that a calibration leaves as they are. NaN and inf scores pass
                through (the metrics count them).
        """
        scores = np.asarray(scores, dtype=np.float64)
        values = np.unique(scores[np.isfinite(scores)])  # sorted
        with np.errstate(over="ignore"):
            llr = self.scale * scores + self.offset
            scaled = self.scale * values
            mapped = scaled + self.offset
        where = f"{self.source}: " if self.source else ""
        for key, result in (("scale", scaled), ("offset", mapped)):
            if not np.all(np.isfinite(result)):
                raise InputError(f"{where}calibration {key} {getattr(self, key):g} takes these scores (from "
                                 f"{values[0]:g} to {values[-1]:g}) beyond the float range: LLRs would be inf")
        for key, result in (("scale", scaled), ("offset", mapped)):
            if np.any(np.diff(result) <= 0):
                raise InputError(
                    f"{where}calibration {key} {getattr(self, key):g} maps {values.size} different scores to only "
                    f"{np.unique(result).size} different LLRs in float64: an increasing affine map keeps the "
                    "scores apart (and the EER as it is); this one cannot")
        return llr


def _check_p_target(p_target: float) -> None:
    if not 0 < p_target < 1:
        raise InputError(f"p_target must lie strictly between 0 and 1, got {p_target}")


def calibration_objective(params, bonafide: np.ndarray, spoof: np.ndarray,
                          p_target: float) -> tuple[float, np.ndarray]:
    """Prior-weighted cross-entropy (bits) of ``llr = a * s + b``, and its gradient in (a, b).

    ``C(a, b) = [p mean_bona log2(1 + e^-(l + t)) + (1 - p) mean_spoof log2(1 + e^(l + t))] / H(p)``
    with ``l = a s + b`` and ``t = logit(p)``: the posterior log-odds at prior ``p`` is the LLR plus ``t``.
    ``H(p)`` (the entropy of the prior, bits) normalises it so that 1 is an uninformative, calibrated
    system; at ``p = 0.5`` this is Cllr.
    """
    a, b = params
    t = math.log(p_target) - math.log1p(-p_target)
    z_bona = a * bonafide + b + t
    z_spoof = a * spoof + b + t
    norm = -(p_target * math.log(p_target) + (1 - p_target) * math.log1p(-p_target))  # nats
    w_bona, w_spoof = p_target / bonafide.size / norm, (1 - p_target) / spoof.size / norm
    cost = w_bona * np.logaddexp(0, -z_bona).sum() + w_spoof * np.logaddexp(0, z_spoof).sum()
    d_bona = -w_bona * expit(-z_bona)  # d cost / d z of each trial
    d_spoof = w_spoof * expit(z_spoof)
    grad = np.array([d_bona @ bonafide + d_spoof @ spoof, d_bona.sum() + d_spoof.sum()])
    return float(cost), grad


def fit_calibration(bonafide_scores, spoof_scores, p_target: float = ASV5_P_TARGET,
                    fitted_on: str = "") -> Calibration:
    """Fit ``llr = scale * score + offset`` by prior-weighted logistic regression (Brümmer's linear calibration).

    Minimises ``calibration_objective``: each class's trials weigh ``p_target`` and ``1 - p_target`` in all,
    whatever the class counts, so the fit does not learn the dev set's class balance. Any ``p_target`` gives
    an LLR; it chooses which operating points the fit serves best, those with Bayes thresholds near
    ``-logit(p_target)``. The default is ASVspoof 5 track 1's (``ASV5_P_TARGET`` = 0.655, i.e. an effective
    spoof prior of 0.345, which P_spoof = 0.05 with C_fa = 10 amounts to).

    Args:
        bonafide_scores, spoof_scores: (Nb,), (Ns,) dev scores, higher = more bona fide.
        p_target: effective prior of bona fide, in (0, 1).
        fitted_on: recorded in the result (e.g. the score file).

    Returns:
        The fitted ``Calibration``.

    Raises:
        InputError: an empty class, NaN/inf scores, scores that separate the classes perfectly (no finite
            optimum), or a fit whose scale is not positive (the scores do not rank bona fide above spoof).
    """
    bonafide = check_scores(bonafide_scores, "bona fide")
    spoof = check_scores(spoof_scores, "spoof")
    _check_p_target(p_target)
    if bonafide.min() > spoof.max():
        raise InputError("the scores separate bona fide from spoof perfectly: a logistic-regression calibration "
                         "has no finite optimum (fit it on a larger or harder dev set)")
    # Fit on standardised scores, where (1, 0) is a sensible start whatever the score units.
    pooled = np.concatenate([bonafide, spoof])
    mean, std = float(pooled.mean()), float(pooled.std())
    if std == 0:
        raise InputError("all scores are equal: there is nothing to calibrate")
    result = minimize(calibration_objective, x0=np.array([1.0, 0.0]), jac=True, method="BFGS",
                      args=((bonafide - mean) / std, (spoof - mean) / std, p_target),
                      options={"gtol": 1e-10, "maxiter": 1000})
    a, b = (float(v) for v in result.x)
    scale, offset = a / std, b - a * mean / std
    if not (math.isfinite(scale) and math.isfinite(offset)):
        raise InputError(f"calibration did not converge ({result.message})")
    if scale <= 0:
        raise InputError(f"the fitted scale is {scale:.4g} <= 0: these scores do not rank bona fide above spoof "
                         "(reversed polarity? the score should be the bona fide logit, higher = bona fide)")
    return Calibration(scale=scale, offset=offset, p_target=float(p_target), fitted_on=str(fitted_on),
                       n_bonafide=int(bonafide.size), n_spoof=int(spoof.size))


# ---------------------------------------------------------------------------------------------------------
# The JSON file
# ---------------------------------------------------------------------------------------------------------

def save_calibration(path: str | os.PathLike, cal: Calibration) -> None:
    """Write ``cal`` as a small JSON object (its six fields, not ``source``; floats keep every digit),
    atomically."""
    for name in ("scale", "offset", "p_target"):
        if not math.isfinite(getattr(cal, name)):
            raise InputError(f"calibration {name} is {getattr(cal, name)}; not writing {printable_path(path)}")
    atomic_write_json(path, {k: v for k, v in asdict(cal).items() if k != "source"})


def load_calibration(path: str | os.PathLike) -> Calibration:
    """Read a file that ``save_calibration`` wrote.

    Raises:
        InputError: naming the file, and the key where one is at fault: unreadable or not JSON (``read_json``:
            syntax, huge integers, deep nesting), not an object, a key missing or unknown, a value of the
            wrong type, not finite, or out of range.
    """
    where = printable_path(path)
    data = read_json(path, "calibration file", expect=dict)
    if "source" in data:  # a field of the loaded object, never of the file
        keys = ", ".join(f.name for f in fields(Calibration) if f.name != "source")
        raise InputError(f"{where}: unknown key(s) source; valid keys in calibration: {keys}")
    try:
        cal = dataclass_from_dict(Calibration, data, root="calibration")
        if cal.scale <= 0:
            raise InputError(f"scale must be positive, got {cal.scale}")
        _check_p_target(cal.p_target)
        for name in ("n_bonafide", "n_spoof"):
            if getattr(cal, name) <= 0:
                raise InputError(f"{name} must be positive, got {getattr(cal, name)}")
    except InputError as e:
        raise InputError(f"{where}: {e}") from None
    return replace(cal, source=where)
