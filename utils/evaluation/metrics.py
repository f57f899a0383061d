"""Countermeasure metrics of ASVspoof 2019: EER, min t-DCF and EER per attack, from score arrays.

Pure numpy, no file I/O (``utils/evaluation/score_files.py`` reads and writes score files). Scores are higher for
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


def check_soft_scores(*score_sets, name: str = "CM") -> None:
    """Raise ``InputError`` if the pooled scores take fewer than 3 distinct values.

    The published evaluations (ASVspoof 2019 ``compute_tDCF``, the 2021 and ASVspoof 5 packages) refuse such
    scores as hard decisions ("provide soft CM scores").

    Args:
        score_sets: one or more (N_i,) score arrays, pooled.
        name: the system, for the message.
    """
    n_distinct = np.unique(np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1) for s in score_sets])).size
    if n_distinct < 3:
        raise InputError(f"{name} scores take only {n_distinct} distinct value(s); soft scores are needed")


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
    sorted_scores, (bonafide_rejected, spoof_rejected) = _sweep(bonafide, spoof)
    frr = bonafide_rejected / bonafide.size
    far = (spoof.size - spoof_rejected) / spoof.size
    thresholds = np.concatenate([[sorted_scores[0] - 0.001], sorted_scores])
    return frr, far, thresholds


def _sweep(*classes: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The sweep under every curve here: the (N_i,) scores of the classes pooled and sorted stably, so that
    tied scores keep the classes in argument order, as the published sweeps do (ties move the EER).

    Returns:
        sorted_scores: (N,); rejected: per class, (N + 1,) int, how many of its scores the k lowest hold.
    """
    scores = np.concatenate(classes)
    order = np.argsort(scores, kind="mergesort")
    kind = np.repeat(np.arange(len(classes)), [c.size for c in classes])[order]
    return scores[order], [np.concatenate([[0], np.cumsum(kind == i)]) for i in range(len(classes))]


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

    Raises:
        InputError: an empty class, NaN/inf scores, CM scores with fewer than 3 distinct values (hard
            decisions, which the published ``compute_tDCF`` refuses), or ASV scores that leave C1 or C2 <= 0.
    """
    bonafide_cm = check_scores(bonafide_cm, "CM bona fide")
    spoof_cm = check_scores(spoof_cm, "CM spoof")
    check_soft_scores(bonafide_cm, spoof_cm)
    # Scores equal to the threshold count as accepted here, though the sweep rejected them: the published rule.
    pfa_asv, pmiss_asv, pmiss_spoof_asv, _ = asv_error_rates(asv_target, asv_nontarget, asv_spoof)

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


# ---------------------------------------------------------------------------------------------------------
# ASVspoof 2021 and ASVspoof 5: the official evaluation packages' metrics
# (asvspoof-challenge/2021 eval-package; asvspoof-challenge/asvspoof5 evaluation-package).
# A function raises InputError where the official code stops the whole run (sys.exit or a crash): an empty
# class, CM scores with fewer than 3 distinct values, negative t-DCF weights, no t-EER crossing.
# Tables (data_utils/corpora.py) turn that into "not computed" for the one cell.
# ---------------------------------------------------------------------------------------------------------

# Revised t-DCF cost model (2021 eval-package config.py; ASVspoof 5 track 2): the priors above, a miss
# costs C_MISS, accepting a non-target C_FA, accepting a spoof C_FA_SPOOF.
C_FA_SPOOF = 10.0

# ASVspoof 5 track 1 DCF: prior of a spoof, cost of rejecting bona fide, cost of accepting a spoof.
DCF_P_SPOOF = 0.05
DCF_C_MISS = 1.0
DCF_C_FA = 10.0

# ASVspoof 5 track 2 a-DCF (the package's call, not a_dcf.CostModel's defaults 0.9/0.05/0.05 and Cfa_cm 20).
ADCF_P_TAR = P_TAR
ADCF_P_NON = P_NON
ADCF_P_SPOOF = P_SPOOF
ADCF_C_MISS = 1.0
ADCF_C_FA_ASV = 10.0
ADCF_C_FA_CM = 10.0

# ASVspoof 5 track 2: the organisers' ASV error rates that fix the ASV operating point of the min t-DCF.
ASV5_PFA_NON = 0.01881016557566423
ASV5_PMISS = 0.01880141010575793
ASV5_PFA_SPOOF = 0.4607082907604729


def asv_error_rates(asv_target, asv_nontarget, asv_spoof) -> tuple[float, float, float, float]:
    """ASV error rates at the ASV's own EER threshold (``obtain_asv_error_rates`` of both packages).

    A score equal to the threshold counts as accepted.

    Args:
        asv_target, asv_nontarget, asv_spoof: (Nt,), (Nn,), (Na,) ASV scores; higher = more target.

    Returns:
        (Pfa_asv, Pmiss_asv, Pmiss_spoof_asv, Pfa_spoof_asv), fractions in [0, 1].
    """
    asv_target = check_scores(asv_target, "ASV target")
    asv_nontarget = check_scores(asv_nontarget, "ASV non-target")
    asv_spoof = check_scores(asv_spoof, "ASV spoof")
    _, threshold = compute_eer(asv_target, asv_nontarget)
    pfa_asv = np.sum(asv_nontarget >= threshold) / asv_nontarget.size
    pmiss_asv = np.sum(asv_target < threshold) / asv_target.size
    pmiss_spoof_asv = np.sum(asv_spoof < threshold) / asv_spoof.size
    pfa_spoof_asv = np.sum(asv_spoof >= threshold) / asv_spoof.size
    return float(pfa_asv), float(pmiss_asv), float(pmiss_spoof_asv), float(pfa_spoof_asv)


def compute_tdcf_c012(pfa_asv: float, pmiss_asv: float, pfa_spoof_asv: float) -> tuple[float, float, float]:
    """Weights C0, C1, C2 of the revised t-DCF (Kinnunen et al., TASLP 2020; 2021 ``get_tDCF_C012``).

    ``t-DCF(s) = C0 + C1 * Pmiss_cm(s) + C2 * Pfa_cm(s)``: C0 is the cost of the ASV's own errors,
    C1 the cost per unit of bona fide rejected by the CM, C2 per unit of spoof accepted by the CM.

    Args:
        pfa_asv, pmiss_asv, pfa_spoof_asv: ASV error rates (fractions), e.g. from ``asv_error_rates``.

    Returns:
        (C0, C1, C2), unitless.
    """
    c0 = P_TAR * C_MISS * pmiss_asv + P_NON * C_FA * pfa_asv
    c1 = P_TAR * C_MISS - (P_TAR * C_MISS * pmiss_asv + P_NON * C_FA * pfa_asv)
    c2 = P_SPOOF * C_FA_SPOOF * pfa_spoof_asv
    return float(c0), float(c1), float(c2)


def compute_min_tdcf_revised(bonafide_cm, spoof_cm, c0: float, c1: float, c2: float) -> float:
    """Minimum normalised revised t-DCF (ASVspoof 2021 LA; ASVspoof 5 track 2) of a CM.

    ``min_s (C0 + C1 Pmiss_cm(s) + C2 Pfa_cm(s)) / (C0 + min(C1, C2))`` over the CM DET curve. Not the
    2019 ``compute_min_tdcf`` (no C0, another normalisation): the two must not be compared.

    Args:
        bonafide_cm, spoof_cm: (Nb,), (Ns,) CM scores.
        c0, c1, c2: weights from ``compute_tdcf_c012``.

    Returns:
        min t-DCF, unitless, between C0 / (C0 + min(C1, C2)) (a perfect CM) and 1; NaN where the
        normalisation is 0 / 0, as the official code gives.

    Raises:
        InputError: an empty class, fewer than 3 distinct CM scores, or a negative weight.
    """
    bonafide_cm = check_scores(bonafide_cm, "CM bona fide")
    spoof_cm = check_scores(spoof_cm, "CM spoof")
    check_soft_scores(bonafide_cm, spoof_cm)
    if c0 < 0 or c1 < 0 or c2 < 0:
        raise InputError(f"t-DCF weights must not be negative (C0 = {c0:.4g}, C1 = {c1:.4g}, C2 = {c2:.4g})")
    pmiss_cm, pfa_cm, _ = compute_det_curve(bonafide_cm, spoof_cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        tdcf_norm = (c0 + c1 * pmiss_cm + c2 * pfa_cm) / (c0 + np.minimum(c1, c2))
    return float(tdcf_norm[np.argmin(tdcf_norm)])  # argmin returns the first NaN if there is one


def compute_min_dcf(bonafide, spoof) -> float:
    """Normalised minimum DCF of a CM (ASVspoof 5 track 1 primary metric, ``compute_mindcf``).

    ``min_k [C_miss (1 - P_spoof) frr(k) + C_fa P_spoof far(k)] / min(C_miss (1 - P_spoof), C_fa P_spoof)``
    over the N + 1 points of the DET curve, with P_spoof 0.05, C_miss 1, C_fa 10.

    Args:
        bonafide, spoof: (Nb,), (Ns,) CM scores.

    Returns:
        minDCF, unitless (0 perfect, 1 = the better of accepting or rejecting everything).
    """
    frr, far, _ = compute_det_curve(bonafide, spoof)
    p_target = 1 - DCF_P_SPOOF
    c_det = DCF_C_MISS * frr * p_target + DCF_C_FA * far * (1 - p_target)
    c_def = min(DCF_C_MISS * p_target, DCF_C_FA * (1 - p_target))
    return float(np.min(c_det) / c_def)


def compute_act_dcf(bonafide, spoof) -> float:
    """Normalised actual DCF of calibrated scores (ASVspoof 5 track 1, ``compute_actDCF``).

    The Bayes threshold of log-likelihood ratios, ``-ln(beta)`` with
    ``beta = C_miss (1 - P_spoof) / (C_fa P_spoof) = 1.9`` (threshold -0.6419); a bona fide score below
    it is a miss, a spoof score at or above it a false alarm.

    Args:
        bonafide, spoof: (Nb,), (Ns,) CM scores as natural-log LLRs (bona fide vs spoof).

    Returns:
        actDCF, unitless; > 1 means worse than a fixed decision, typically from uncalibrated scores.
    """
    bonafide = check_scores(bonafide, "bona fide")
    spoof = check_scores(spoof, "spoof")
    beta = DCF_C_MISS * (1 - DCF_P_SPOOF) / (DCF_C_FA * DCF_P_SPOOF)
    threshold = -np.log(beta)
    rate_miss = np.sum(bonafide < threshold) / bonafide.size
    rate_fa = np.sum(spoof >= threshold) / spoof.size
    act_dcf = DCF_C_MISS * (1 - DCF_P_SPOOF) * rate_miss + DCF_C_FA * DCF_P_SPOOF * rate_fa
    return float(act_dcf / np.min([DCF_C_FA * DCF_P_SPOOF, DCF_C_MISS * (1 - DCF_P_SPOOF)]))


def compute_cllr(bonafide, spoof) -> float:
    """Log-likelihood-ratio cost in bits (ASVspoof 5 track 1, ``calculate_CLLR``).

    ``Cllr = [mean log(1 + e^-s_bona) + mean log(1 + e^s_spoof)] / (2 ln 2)``, computed as
    ``log1p(exp(.))`` like the package, so a score beyond about +-709 gives inf.

    Args:
        bonafide, spoof: (Nb,), (Ns,) CM scores as natural-log LLRs.

    Returns:
        Cllr in bits; 0 perfect, 1 = uninformative but calibrated.
    """
    bonafide = check_scores(bonafide, "bona fide")
    spoof = check_scores(spoof, "spoof")
    with np.errstate(over="ignore"):
        cost = np.mean(np.log1p(np.exp(-bonafide))) + np.mean(np.log1p(np.exp(spoof)))
    return float(0.5 * cost / np.log(2))


def compute_a_dcf(sasv_target, sasv_nontarget, sasv_spoof) -> float:
    """Minimum normalised architecture-agnostic DCF of a SASV system (ASVspoof 5 track 2 primary metric).

    Over the thresholds of the pooled, stably sorted scores (the first point accepts everything):
    ``a(k) = C_miss P_tar Pmiss_tar(k) + C_fa_asv P_non Pfa_non(k) + C_fa_cm P_spoof Pfa_spoof(k)``,
    normalised by ``min(C_fa_asv P_non + C_fa_cm P_spoof, C_miss P_tar)`` (Shim et al., Odyssey 2024).

    Args:
        sasv_target, sasv_nontarget, sasv_spoof: (Nt,), (Nn,), (Na,) SASV scores; higher = accept.

    Returns:
        a-DCF, unitless (1 = the better of accepting or rejecting everything).
    """
    target = check_scores(sasv_target, "SASV target")
    nontarget = check_scores(sasv_nontarget, "SASV non-target")
    spoof = check_scores(sasv_spoof, "SASV spoof")
    _, (target_rejected, nontarget_rejected, spoof_rejected) = _sweep(target, nontarget, spoof)
    pmiss_tar = target_rejected / target.size
    # (n - k) / n, as the a-DCF code writes it; compute_asv_curves' 1 - k / n (the t-EER code's) can differ
    # in the last bit, so the two stay apart.
    pfa_non = (nontarget.size - nontarget_rejected) / nontarget.size
    pfa_spoof = (spoof.size - spoof_rejected) / spoof.size
    a_dcf = (np.array([ADCF_C_MISS * ADCF_P_TAR]) * pmiss_tar + np.array([ADCF_C_FA_ASV * ADCF_P_NON]) * pfa_non
             + np.array([ADCF_C_FA_CM * ADCF_P_SPOOF]) * pfa_spoof)
    a_dcf_norm = a_dcf / min(ADCF_C_FA_ASV * ADCF_P_NON + ADCF_C_FA_CM * ADCF_P_SPOOF, ADCF_C_MISS * ADCF_P_TAR)
    return float(a_dcf_norm[np.argmin(a_dcf_norm)])


def compute_asv_curves(asv_target, asv_nontarget, asv_spoof) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ASV error rates at every threshold of the pooled, stably sorted three-class scores.

    (``compute_Pmiss_Pfa_Pspoof_curves`` of the ASVspoof 5 package.) Point k rejects the k lowest scores.

    Args:
        asv_target, asv_nontarget, asv_spoof: (Nt,), (Nn,), (Na,) ASV scores.

    Returns:
        pmiss, pfa_non, pfa_spoof: (Nt + Nn + Na + 1,) each.
    """
    target = check_scores(asv_target, "ASV target")
    nontarget = check_scores(asv_nontarget, "ASV non-target")
    spoof = check_scores(asv_spoof, "ASV spoof")
    _, (target_rejected, nontarget_rejected, spoof_rejected) = _sweep(target, nontarget, spoof)
    return (target_rejected / target.size, 1 - nontarget_rejected / nontarget.size,
            1 - spoof_rejected / spoof.size)


T_EER_SEARCHES = ("accelerated", "exact")

# The accelerated t-EER search of the ASVspoof 5 package (``compute_teer_accelerated``): a coarse search on
# curves decimated to about this many points, then an exact one within this many points of its crossing.
T_EER_COARSE_POINTS = 3000
T_EER_FINE_HALF_WIDTH = 1600


def compute_t_eer(cm_target, cm_nontarget, cm_spoof, asv_target, asv_nontarget, asv_spoof,
                  search: str = "accelerated") -> float:
    """Concurrent tandem EER of a CM and an ASV system, in percent (ASVspoof 5 track 2, ``compute_teer``).

    For every ASV threshold j (allowed only where Pmiss_asv < (Pfa_non + Pfa_spoof) / 2), the CM threshold
    i*(j) that equalises the tandem miss and false-alarm rates (spoof prevalence 1/2); the t-EER is
    ``Pfa_spoof_asv[j] * Pfa_cm[i*]`` at the j where ``|Pfa_non/Pfa_spoof - Pfa_cm/(1 - Pmiss_cm)|`` is
    smallest (the first such j).

    ``search``: "accelerated" (the default) is the search the official package runs for every track 2 figure,
    ``compute_teer_accelerated``: where both curves have at least 3000 points, the exact search on the
    curves taken every ``len // 3000`` points, then the exact search on the points within 1600 of the
    crossing it found, each curve cut there; below 3000 points it is the exact search. Time about linear
    in the trials. "exact" searches every (CM, ASV) pair, O(N_cm * N_asv); the two can differ where the
    coarse grid misses the best crossing.

    Args:
        cm_target, cm_nontarget, cm_spoof: CM scores of the target, non-target and spoof trials.
        asv_target, asv_nontarget, asv_spoof: ASV scores of the same trials.
        search: "accelerated" or "exact".

    Returns:
        t-EER in percent.

    Raises:
        InputError: an empty class, or no allowed ASV threshold with a finite crossing criterion (on the
            coarse grid, for the accelerated search: the official package stops there too).
    """
    if search not in T_EER_SEARCHES:
        raise ValueError(f"search must be one of {', '.join(T_EER_SEARCHES)}, got {search!r}")
    asv = compute_asv_curves(asv_target, asv_nontarget, asv_spoof)  # pmiss, pfa_non, pfa_spoof
    cm_bonafide = np.concatenate([check_scores(cm_target, "CM target"), check_scores(cm_nontarget, "CM non-target")])
    cm = compute_det_curve(cm_bonafide, cm_spoof)[:2]  # pmiss, pfa
    found = _t_eer_accelerated(cm, asv) if search == "accelerated" else _t_eer_search(cm, asv)
    if found is None:
        raise InputError("t-EER: no ASV threshold where the tandem curves cross")
    return float(found[0] * 100)


def _t_eer_accelerated(cm: tuple, asv: tuple) -> tuple[float, int, int] | None:
    """The official package's coarse-to-fine search (``compute_teer_accelerated``), as written there."""
    step_cm, step_asv = len(cm[0]) // T_EER_COARSE_POINTS, len(asv[0]) // T_EER_COARSE_POINTS
    if step_cm == 0 or step_asv == 0:
        return _t_eer_search(cm, asv)
    coarse = _t_eer_search(tuple(c[::step_cm] for c in cm), tuple(c[::step_asv] for c in asv))
    if coarse is None:
        return None
    _, j, i = coarse
    asv_window = slice(max(j * step_asv - T_EER_FINE_HALF_WIDTH, 0), j * step_asv + T_EER_FINE_HALF_WIDTH)
    cm_window = slice(max(i * step_cm - T_EER_FINE_HALF_WIDTH, 0), i * step_cm + T_EER_FINE_HALF_WIDTH)
    fine = _t_eer_search(tuple(c[cm_window] for c in cm), tuple(c[asv_window] for c in asv))
    return None if fine is None else (fine[0], asv_window.start + fine[1], cm_window.start + fine[2])


def _t_eer_search(cm: tuple, asv: tuple) -> tuple[float, int, int] | None:
    """The exact concurrent t-EER search over the given curve points (``compute_teer`` of the package).

    Args:
        cm: (pmiss_cm, pfa_cm), (N_cm,) each; asv: (pmiss_asv, pfa_non_asv, pfa_spoof_asv), (N_asv,) each.

    Returns:
        (t-EER as a fraction, ASV index j, CM index i) of the crossing, or None where no allowed ASV threshold
        has a finite criterion.
    """
    pmiss_cm, pfa_cm = cm
    pmiss_asv, pfa_non_asv, pfa_spoof_asv = asv
    rho = 0.5  # spoof prevalence; any value gives the same concurrent t-EER
    i_cm = np.empty(pmiss_asv.size, dtype=np.int64)  # i*(j): the first CM index where the tandem rates meet
    block = max(1, 2_000_000 // pmiss_cm.size)  # ASV thresholds per block of the (ASV x CM) grid
    for start in range(0, pmiss_asv.size, block):
        j = slice(start, start + block)
        pmiss_tdm = pmiss_cm + (1 - pmiss_cm) * pmiss_asv[j, None]  # (J, N_cm)
        pfa_tdm = (1 - rho) * (1 - pmiss_cm) * pfa_non_asv[j, None] + rho * pfa_cm * pfa_spoof_asv[j, None]
        i_cm[j] = np.argmin(np.abs(pmiss_tdm - pfa_tdm), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        crit = np.abs(pfa_non_asv / pfa_spoof_asv - pfa_cm[i_cm] / (1 - pmiss_cm[i_cm]))  # (N_asv,)
    allowed = pmiss_asv < (1 - rho) * pfa_non_asv + rho * pfa_spoof_asv
    # The package keeps a crossing only where crit < the best so far (from inf): NaN and inf never count.
    crit = np.where(allowed & np.isfinite(crit), crit, np.inf)
    j = int(np.argmin(crit))
    if not np.isfinite(crit[j]):
        return None
    i = int(i_cm[j])
    return float(pfa_spoof_asv[j] * pfa_cm[i]), j, i
