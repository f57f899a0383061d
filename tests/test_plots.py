"""utils.evaluation.plots: the DET curve and score histograms are written as PNGs; matplotlib stays optional."""
import sys

import numpy as np
import pytest

from utils.errors import InputError
from utils.evaluation.score_files import CMScores

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ATTACKS = ["A07", "A08", "A09", "A10", "A11", "A12"]
N_BONAFIDE, N_PER_ATTACK = 400, 150


@pytest.fixture(scope="module")
def cm() -> CMScores:
    """Generated scores: bona fide around +3, each attack closer to it than the last; every third score
    rounded to 0.1, so bona fide and spoof scores tie."""
    rng = np.random.default_rng(0)
    bonafide = rng.normal(3.0, 1.5, N_BONAFIDE)
    spoof = np.concatenate([rng.normal(-4.0 + i, 1.5, N_PER_ATTACK) for i in range(len(ATTACKS))])
    scores = np.concatenate([bonafide, spoof])
    scores[::3] = np.round(scores[::3], 1)
    cm = CMScores([f"LA_E_{i:07d}" for i in range(scores.size)],
                  ["-"] * N_BONAFIDE + [a for a in ATTACKS for _ in range(N_PER_ATTACK)],
                  ["bonafide"] * N_BONAFIDE + ["spoof"] * spoof.size, scores)
    assert np.intersect1d(cm.scores[cm.keys == "bonafide"], cm.scores[cm.keys == "spoof"]).size > 0
    return cm


def test_save_plots_writes_pngs(cm, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install matplotlib)")
    from utils.evaluation.plots import save_plots

    paths = save_plots(cm, tmp_path / "plots")
    assert [p.name for p in paths] == ["det_curve.png", "score_histograms.png"]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["det_curve.png", "score_histograms.png"]


def test_figures(cm):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install matplotlib)")
    from utils.evaluation.metrics import compute_eer
    from utils.evaluation.plots import det_curve_figure, score_histograms_figure

    bonafide, spoof = cm.scores[cm.keys == "bonafide"], cm.scores[cm.keys == "spoof"]
    det = det_curve_figure(bonafide, spoof)
    legend = [t.get_text() for t in det.axes[0].get_legend().get_texts()]
    assert f"EER {100 * compute_eer(bonafide, spoof)[0]:.3f} %" in legend[1]
    histograms = score_histograms_figure(cm)
    titles = [ax.get_title() for ax in histograms.axes if ax.axison]
    # one panel for all attacks, then one per attack, each with its number of spoof scores
    assert titles == [f"all attacks ({len(ATTACKS) * N_PER_ATTACK})"] + [f"{a} ({N_PER_ATTACK})" for a in ATTACKS]


def test_figure_goes_to_tensorboard(cm, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install matplotlib)")
    tensorboard = pytest.importorskip("torch.utils.tensorboard", reason="tensorboard is not installed")
    from utils.evaluation.plots import det_curve_figure

    with tensorboard.SummaryWriter(tmp_path) as writer:
        writer.add_figure("dev/det_curve", det_curve_figure(cm.scores[cm.keys == "bonafide"],
                                                            cm.scores[cm.keys == "spoof"]), global_step=1)
    [events] = tmp_path.glob("events.out.tfevents.*")
    assert events.stat().st_size > 10_000


def test_missing_matplotlib_says_how_to_install(cm, tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    from utils.evaluation.plots import save_plots

    with pytest.raises(InputError, match="pip install matplotlib"):
        save_plots(cm, tmp_path)
    assert list(tmp_path.iterdir()) == []
