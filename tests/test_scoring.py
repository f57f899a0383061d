"""LA_tiny through the data path and the published AASIST weights, in-process and via evaluate.py."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from data_utils import EvalDataset, read_protocol, split_paths
from models import load_model
from utils.scores import read_cm_scores
from utils.scoring import score_dataset


@pytest.fixture(scope="module")
def tiny(reference_dir):
    expected = json.loads((reference_dir / "LA_tiny_scores.json").read_text())
    return reference_dir / "LA_tiny", expected


def test_la_tiny_scores_equal_the_published(tiny, reference_dir, repo_root):
    root, expected = tiny
    paths = split_paths(root, "eval")
    dataset = EvalDataset(read_protocol(paths.protocol), paths.audio_dir)
    model = load_model(repo_root / "config" / "config.json", reference_dir / "weights" / "AASIST.pth", "cpu")
    cm = score_dataset(model, dataset, batch_size=4, device=torch.device("cpu"))
    assert cm.utt_ids.tolist() == list(expected)
    np.testing.assert_allclose(cm.scores, list(expected.values()), atol=1e-4, rtol=0)
    assert cm.keys.tolist() == ["bonafide", "spoof"] * 3 and cm.sources.tolist()[1] == "A08"


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_evaluate_cli_scores_la_tiny(tiny, reference_dir, repo_root, tmp_path, compiled):
    if compiled and not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip("torch.compile on a CPU needs a C++ compiler (g++)")
    root, expected = tiny
    out = tmp_path / "metrics.json"
    result = subprocess.run(
        [sys.executable, "scripts/evaluate.py", "--config", "config/config.json", "--eval_set", "eval",
         "--database_path", str(root), "--model_path", str(reference_dir / "weights" / "AASIST.pth"),
         "--output_dir", str(tmp_path / "scores"), "--batch_size", "3", "--device", "cpu", "--json", str(out)]
        + ["--compile"] * compiled,
        cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
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
