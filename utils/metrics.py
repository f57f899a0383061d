"""Countermeasure metrics of ASVspoof 2019: EER, min t-DCF and EER per attack, from score arrays.

Pure numpy, no file I/O (``utils/score_files.py`` reads and writes score files). Scores are higher for
"more bona fide" (CM) or "more target" (ASV). The sweep reproduces the published evaluation
(clovaai/aasist ``evaluation.py``) bit for bit, ties between classes included, so the numbers
agree with the published ones to the last digit.
"""
import numpy as np

from utils.errors import InputError

# ASVspoof 2019 t-DCF cost model: priors of spoof / target / non-target trials and the costs of
# a miss and a false alarm, the same for the ASV system and the CM.
P_SPOOF = 0.05
P_TAR = (1 - P_SPOOF) * 0.99
P_NON = (1 - P_SPOOF) * 0.01
C_MISS = 1.0
C_FA = 10.0


def check_scores(scores, name: str) -> np.ndarray:
    """Return ``scores`` as a float64 vector; raise ``InputError`` if it is empty or not finite.

    Args:
        scores: (N,) scores of one class.
        name: that class in words, for the message (e.g. "CM spoof").
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise InputError(f"no {name} scores: this metric needs scores of both classes")
    n_bad = int(np.count_nonzero(~np.isfinite(scores)))
    if n_bad:
        raise InputError(f"{n_bad} of {scores.size} {name} scores are NaN or inf")
    return scores


def compute_det_curve(bonafide, spoof) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss and false-alarm rates at every threshold of the pooled, sorted scores.

    Point ``k`` (0 ... N) rejects the ``k`` lowest scores; point 0 rejects nothing.

    Args:
        bonafide: (Nb,) scores of the positive class (bona fide for a CM, target for an ASV).
        spoof: (Ns,) scores of the negative class (spoof for a CM, non-target for an ASV).

    Returns:
        frr: (Nb + Ns + 1,) fraction of ``bonafide`` rejected, rising from 0 to 1.
        far: (Nb + Ns + 1,) fraction of ``spoof`` accepted, falling from 1 to 0.
        thresholds: (Nb + Ns + 1,) the lowest score - 0.001, then the sorted scores.
    """
    bonafide = check_scores(bonafide, "bona fide")
    spoof = check_scores(spoof, "spoof")
    scores = np.concatenate([bonafide, spoof])
    is_bonafide = np.concatenate([np.ones(bonafide.size), np.zeros(spoof.size)])
    # Stable sort: tied scores keep bona fide before spoof, as the published sweep does; ties move the EER.
    order = np.argsort(scores, kind="mergesort")
    bonafide_rejected = np.cumsum(is_bonafide[order])
    spoof_accepted = spoof.size - (np.arange(1, scores.size + 1) - bonafide_rejected)
    frr = np.concatenate([[0.0], bonafide_rejected / bonafide.size])
    far = np.concatenate([[1.0], spoof_accepted / spoof.size])
    thresholds = np.concatenate([[scores[order[0]] - 0.001], scores[order]])
    return frr, far, thresholds


def compute_eer(bonafide, spoof) -> tuple[float, float]:
    """Equal error rate, as a fraction, and the threshold where it is reached.

    The EER point is the first point of the DET curve where ``|frr - far|`` is smallest;
    the EER is the mean of ``frr`` and ``far`` there.

    Args:
        bonafide: (Nb,) positive-class scores.
        spoof: (Ns,) negative-class scores.

    Returns:
        (eer, threshold): eer in [0, 1]; threshold in score units, the highest score rejected at the EER point.
    """
    frr, far, thresholds = compute_det_curve(bonafide, spoof)
    k = int(np.argmin(np.abs(frr - far)))
    return float(np.mean((frr[k], far[k]))), float(thresholds[k])


def compute_min_tdcf(bonafide_cm, spoof_cm, asv_target, asv_nontarget, asv_spoof) -> float:
    """Minimum normalised tandem detection cost function (ASVspoof 2019) of a CM.

    The ASV system runs at its own EER threshold (target vs non-target); the CM threshold sweeps
    the CM DET curve; the cost is normalised by that of the better of "accept all" and "reject all".

    Args:
        bonafide_cm, spoof_cm: (Nb,), (Ns,) CM scores.
        asv_target, asv_nontarget, asv_spoof: (Nt,), (Nn,), (Na,) ASV scores of the three trial kinds.

    Returns:
        min t-DCF, unitless (0 is perfect; 1 is no better than a CM that accepts or rejects everything).
    """
    bonafide_cm = check_scores(bonafide_cm, "CM bona fide")
    spoof_cm = check_scores(spoof_cm, "CM spoof")
    asv_target = check_scores(asv_target, "ASV target")
    asv_nontarget = check_scores(asv_nontarget, "ASV non-target")
    asv_spoof = check_scores(asv_spoof, "ASV spoof")

    _, asv_threshold = compute_eer(asv_target, asv_nontarget)
    # Scores equal to the threshold count as accepted here, though the sweep rejected them: the published rule.
    pfa_asv = np.sum(asv_nontarget >= asv_threshold) / asv_nontarget.size
    pmiss_asv = np.sum(asv_target < asv_threshold) / asv_target.size
    pmiss_spoof_asv = np.sum(asv_spoof < asv_threshold) / asv_spoof.size

    # c1: cost per unit of CM miss rate (bona fide rejected); c2: per unit of CM false-alarm rate.
    c1 = P_TAR * (C_MISS - C_MISS * pmiss_asv) - P_NON * C_FA * pfa_asv
    c2 = C_FA * P_SPOOF * (1 - pmiss_spoof_asv)
    if c1 <= 0 or c2 <= 0:
        raise InputError(
            f"t-DCF is undefined for these ASV scores (C1 = {c1:.4g}, C2 = {c2:.4g}; both must be > 0): "
            "the ASV system's error rates at its EER threshold are too high"
        )
    frr, far, _ = compute_det_curve(bonafide_cm, spoof_cm)
    tdcf = c1 * frr + c2 * far
    return float(np.min(tdcf / np.minimum(c1, c2)))


def per_attack_eer(bonafide, spoof, spoof_attacks) -> dict[str, float]:
    """EER in percent of the bona fide scores against each attack's spoof scores.

    Args:
        bonafide: (Nb,) CM bona fide scores.
        spoof: (Ns,) CM spoof scores.
        spoof_attacks: (Ns,) attack id of each spoof score (e.g. "A07"); any ids, as found.

    Returns:
        {attack id: EER in percent}, sorted by attack id.
    """
    spoof = np.asarray(spoof, dtype=np.float64).reshape(-1)
    spoof_attacks = np.asarray(spoof_attacks).reshape(-1)
    if spoof_attacks.shape != spoof.shape:
        raise InputError(f"{spoof_attacks.size} attack ids given for {spoof.size} spoof scores")
    return {
        str(attack): 100 * compute_eer(bonafide, spoof[spoof_attacks == attack])[0]
        for attack in sorted(set(spoof_attacks.tolist()))
    }
