"""LA_tiny through the data path and the published AASIST weights, in-process and via evaluate.py."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from data_utils import EvalDataset, read_protocol, split_paths
from torch.utils.data import DataLoader, TensorDataset

from models import AASIST, load_model
from utils.config import load_config
from utils.evaluation.score_files import read_cm_scores
from utils.engine.scoring import score_batches, score_dataset


@pytest.fixture(scope="module")
def tiny(reference_dir):
    expected = json.loads((reference_dir / "LA_tiny_scores.json").read_text())
    return reference_dir / "LA_tiny", expected


def test_la_tiny_scores_equal_the_published(tiny, reference_dir, repo_root):
    root, expected = tiny
    paths = split_paths(root, "eval")
    dataset = EvalDataset(read_protocol(paths.protocol), paths.audio_dir, 64600)
    model = load_model(repo_root / "config" / "config.json", reference_dir / "weights" / "AASIST.pth", "cpu")
    cm = score_dataset(model, dataset, batch_size=4, device=torch.device("cpu"))
    assert cm.utt_ids.tolist() == list(expected)
    np.testing.assert_allclose(cm.scores, list(expected.values()), atol=1e-4, rtol=0)
    assert cm.keys.tolist() == ["bonafide", "spoof"] * 3 and cm.sources.tolist()[1] == "A08"
    # The last batch (2 of 4) padded to full size, as for a compiled model: the same 6 scores.
    padded = score_batches(model, DataLoader(dataset, batch_size=4), torch.device("cpu"), fixed_batch=True)
    np.testing.assert_allclose(padded, list(expected.values()), atol=1e-4, rtol=0)


def test_padding_only_after_full_batches():
    class Recorder(torch.nn.Module):  # score = first sample, so that dropped padding would show
        def forward(self, x):
            shapes.append(len(x))
            return None, torch.stack([x[:, 0], x[:, 0]], dim=1)

    def run(n):
        items = TensorDataset(torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3), torch.zeros(n))
        return score_batches(Recorder(), DataLoader(items, batch_size=2), torch.device("cpu"), fixed_batch=True)

    shapes = []
    assert run(5).tolist() == [0, 1, 2, 3, 4] and shapes == [2, 2, 2]  # last batch of 1 padded to 2
    shapes = []
    assert run(1).tolist() == [0] and shapes == [1]  # one short batch: nothing to share a compile with


def test_a_compiled_model_scores_a_short_last_batch_without_recompiling(repo_root):
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    model = AASIST(load_config(repo_root / "config" / "demo.json").model_config).eval()
    compiled = torch.compile(model, backend="eager", dynamic=False)  # dynamo's graph capture alone, no codegen
    items = TensorDataset(torch.randn(5, 12000), torch.zeros(5))
    scores = score_batches(compiled, DataLoader(items, batch_size=2), torch.device("cpu"))
    assert counters["stats"]["unique_graphs"] == 1  # batches of 2, 2 and 1 (padded to 2): one shape
    with torch.no_grad():
        np.testing.assert_allclose(scores, model(items.tensors[0])[1][:, 1].numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_evaluate_cli_scores_la_tiny(tiny, reference_dir, repo_root, tmp_path, compiled):
    if compiled and not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip("torch.compile on a CPU needs a C++ compiler (g++)")
    root, expected = tiny
    out = tmp_path / "metrics.json"
    earlier = tmp_path / "scores" / "AASIST_eval_scores.txt"  # as if another model named AASIST.pth was scored
    earlier.parent.mkdir()
    earlier.write_text("LA_E_1 - bonafide 1.0\n")
    result = subprocess.run(
        [sys.executable, "scripts/evaluate.py", "--config", "config/config.json", "--eval_set", "eval",
         "--database_path", str(root), "--model_path", str(reference_dir / "weights" / "AASIST.pth"),
         "--output_dir", str(tmp_path / "scores"), "--batch_size", "4", "--device", "cpu", "--json", str(out)]
        + ["--compile"] * compiled,
        cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"note: {earlier} holds the scores of other weights" in result.stdout
    assert earlier.read_text() == "LA_E_1 - bonafide 1.0\n"  # another model's file is never replaced
    metrics = json.loads(out.read_text())
    cm = read_cm_scores(metrics["score_file"])
    np.testing.assert_allclose(cm.scores, [expected[u] for u in cm.utt_ids], atol=1e-4, rtol=0)
    assert metrics["min_tdcf"] is None and "not computed" in result.stdout
    assert set(metrics["per_attack_eer_percent"]) == {"A08", "A10", "A12"}


def test_evaluate_cli_model_errors(repo_root, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "scripts/evaluate.py", *args], cwd=repo_root,
                              capture_output=True, text=True, timeout=120)
    missing = run("--config", "config/config.json", "--database_path", str(tmp_path), "--model_path", "x.pth")
    assert missing.returncode == 2 and "cannot read protocol file" in missing.stderr
    assert "Traceback" not in missing.stderr
    both = run("--config", "config/config.json", "--scores", "s.txt")
    assert both.returncode == 2 and "either --config" in both.stderr


def test_two_runs_best_pth_scored_into_one_folder_never_collide(tiny, reference_dir, repo_root, tmp_path):
    # Every run writes weights/best.pth: scoring two runs into one folder must keep both score files.
    root, _ = tiny
    runs = {}
    for run, (config, weights) in {"run1": ("config/AASIST-L.json", "AASIST-L.pth"),
                                   "run2": ("config/config.json", "AASIST.pth")}.items():
        (tmp_path / run / "weights").mkdir(parents=True)
        shutil.copy(reference_dir / "weights" / weights, tmp_path / run / "weights" / "best.pth")
        runs[run] = config
    out = tmp_path / "scores"

    def evaluate(run):
        result = subprocess.run(
            [sys.executable, "scripts/evaluate.py", "--config", runs[run], "--database_path", str(root),
             "--model_path", str(tmp_path / run / "weights" / "best.pth"), "--output_dir", str(out),
             "--device", "cpu", "--json", str(tmp_path / f"{run}.json")],
            cwd=repo_root, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        return json.loads((tmp_path / f"{run}.json").read_text())["score_file"], result.stdout

    first, _ = evaluate("run1")
    before = open(first).read()
    second, stdout = evaluate("run2")
    assert second != first and open(first).read() == before  # the first model's scores are kept
    assert f"note: {first} holds the scores of other weights" in stdout
    assert evaluate("run2")[0] == second  # the same weights find their own file again
    assert sorted(p.name for p in out.glob("*_scores.txt")) == sorted([first.split("/")[-1], second.split("/")[-1]])
