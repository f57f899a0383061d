"""utils.plots: the DET curve and score histograms are written as PNGs; matplotlib stays optional."""
import sys

import pytest

from utils.errors import InputError
from utils.scores import read_cm_scores

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cm(reference_dir):
    return read_cm_scores(reference_dir / "cm_scores.txt")  # attacks A07-A19, some tied scores


def test_save_plots_writes_pngs(cm, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install matplotlib)")
    from utils.plots import save_plots

    paths = save_plots(cm, tmp_path / "plots")
    assert [p.name for p in paths] == ["det_curve.png", "score_histograms.png"]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["det_curve.png", "score_histograms.png"]


def test_figures(cm):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install matplotlib)")
    from utils.metrics import compute_eer
    from utils.plots import det_curve_figure, score_histograms_figure

    bonafide, spoof = cm.scores[cm.keys == "bonafide"], cm.scores[cm.keys == "spoof"]
    det = det_curve_figure(bonafide, spoof)
    legend = [t.get_text() for t in det.axes[0].get_legend().get_texts()]
    assert f"EER {100 * compute_eer(bonafide, spoof)[0]:.3f} %" in legend[1]
    histograms = score_histograms_figure(cm)
    titles = [ax.get_title() for ax in histograms.axes if ax.axison]
    assert titles[0].startswith("all attacks") and len(titles) == 1 + 13  # one panel per attack, A07-A19


def test_figure_goes_to_tensorboard(cm, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install matplotlib)")
    tensorboard = pytest.importorskip("torch.utils.tensorboard", reason="tensorboard is not installed")
    from utils.plots import det_curve_figure

    with tensorboard.SummaryWriter(tmp_path) as writer:
        writer.add_figure("dev/det_curve", det_curve_figure(cm.scores[cm.keys == "bonafide"],
                                                            cm.scores[cm.keys == "spoof"]), global_step=1)
    [events] = tmp_path.glob("events.out.tfevents.*")
    assert events.stat().st_size > 10_000


def test_missing_matplotlib_says_how_to_install(cm, tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    from utils.plots import save_plots

    with pytest.raises(InputError, match="pip install matplotlib"):
        save_plots(cm, tmp_path)
    assert list(tmp_path.iterdir()) == []
