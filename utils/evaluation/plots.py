"""Figures of a set of CM scores: the DET curve and score histograms, as matplotlib Figures or PNG files.

matplotlib is optional (training and scoring never need it): it is imported inside the functions, with
the non-interactive Agg canvas, and a missing matplotlib is an ``InputError`` that says how to install it.
The functions return ``matplotlib.figure.Figure`` objects, so ``SummaryWriter.add_figure`` takes them.
"""
import math
import os
from pathlib import Path

import numpy as np

from utils.errors import InputError
from utils.io import atomic_open
from utils.evaluation.metrics import check_scores, compute_det_curve, compute_eer
from utils.evaluation.score_files import CMScores

# DET axes run from 0.05 % to 60 %: the ASVspoof 2019 LA EERs of interest (0.8 % and up) sit in the
# middle, and rates of 0 or 1 (normal deviate -inf / inf) are clipped to the edges.
_DET_LIMITS = (0.0005, 0.6)
_DET_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)


def require_matplotlib() -> None:
    """Fail early, before a long job, when plots are asked for and matplotlib is missing."""
    _new_figure(1.0, 1.0)


def _new_figure(width: float, height: float):
    """A Figure on an Agg canvas, outside pyplot (no global state, nothing to close)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("plotting needs matplotlib, which is not installed: pip install matplotlib") from None
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def det_curve_figure(bonafide, spoof, title: str = "DET curve"):
    """DET curve on normal-deviate axes (``scipy.stats.norm.ppf`` of the error rates), EER point marked.

    Args:
        bonafide: (Nb,) CM scores of bona fide trials (higher = more bona fide).
        spoof: (Ns,) CM scores of spoof trials.
        title: the axes' title.

    Returns:
        matplotlib Figure: x = spoof accepted (false acceptance rate), y = bona fide rejected (miss rate),
        both in percent on probit scales.
    """
    from scipy.stats import norm

    fig = _new_figure(5.0, 5.0)
    frr, far, _ = compute_det_curve(bonafide, spoof)
    eer, threshold = compute_eer(bonafide, spoof)
    lo, hi = _DET_LIMITS

    def probit(p):
        return norm.ppf(np.clip(p, lo, hi))

    ax = fig.add_subplot()
    ax.plot(probit(far), probit(frr), lw=1.5, label="CM")
    ax.plot(probit([lo, hi]), probit([lo, hi]), color="0.7", lw=0.8, ls="--")  # where FAR = FRR
    ax.plot(probit(eer), probit(eer), "o", color="C3",
            label=f"EER {100 * eer:.3f} % (threshold {threshold:.4g})")
    ticks = probit(_DET_TICKS)
    labels = [f"{100 * t:g}" for t in _DET_TICKS]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set_xlim(probit(lo), probit(hi))
    ax.set_ylim(probit(lo), probit(hi))
    ax.set_xlabel("spoof accepted, false acceptance rate (%)")
    ax.set_ylabel("bona fide rejected, miss rate (%)")
    ax.set_title(title)
    ax.grid(True, color="0.9")
    ax.legend(loc="upper right")
    return fig


def score_histograms_figure(cm: CMScores, bins: int = 60):
    """Histograms of the bona fide scores against all spoof scores, then against each attack's.

    Each panel shares the bins and x range and shows densities, so classes of any size compare; the
    dashed line is the EER threshold of the whole set.

    Args:
        cm: the CM scores (spoof ``sources`` are the attack ids).
        bins: histogram bins over the whole score range.

    Returns:
        matplotlib Figure with 1 + (number of attacks) panels, four per row.
    """
    is_bonafide = cm.keys == "bonafide"
    bonafide = check_scores(cm.scores[is_bonafide], "CM bona fide")
    spoof = check_scores(cm.scores[~is_bonafide], "CM spoof")
    attacks = cm.sources[~is_bonafide]
    _, threshold = compute_eer(bonafide, spoof)
    edges = np.linspace(cm.scores.min(), cm.scores.max(), bins + 1)
    panels = [("all attacks", spoof)] + [(a, spoof[attacks == a]) for a in sorted(set(attacks.tolist()))]

    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _new_figure(3.0 * ncols, 2.4 * nrows)
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
    for ax, (name, scores) in zip(axes, panels):
        ax.hist(bonafide, edges, density=True, histtype="stepfilled", alpha=0.6, color="C0", label="bona fide")
        ax.hist(scores, edges, density=True, histtype="stepfilled", alpha=0.6, color="C3", label="spoof")
        ax.axvline(threshold, color="0.3", lw=0.8, ls="--")
        ax.set_title(f"{name} ({scores.size})", fontsize=9)
        ax.tick_params(labelsize=8, labelbottom=True)  # also under panels with no panel below them
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    axes[0].legend(fontsize=8)
    fig.supxlabel("score (bona fide logit)")
    fig.supylabel("density")
    return fig


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG, atomically (a reader never sees half an image)."""
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    return path


def cm_figures(cm: CMScores) -> dict:
    """The DET curve and the score histograms of a set of CM scores, by name (the file or tag stem)."""
    is_bonafide = cm.keys == "bonafide"
    return {"det_curve": det_curve_figure(cm.scores[is_bonafide], cm.scores[~is_bonafide]),
            "score_histograms": score_histograms_figure(cm)}


def save_plots(cm: CMScores, out_dir: str | os.PathLike, prefix: str = "") -> list[Path]:
    """Write ``<prefix>det_curve.png`` and ``<prefix>score_histograms.png`` into ``out_dir``.

    Returns:
        the two paths written.
    """
    return [save_figure(fig, Path(out_dir) / f"{prefix}{name}.png") for name, fig in cm_figures(cm).items()]
