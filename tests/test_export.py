"""models.export and scripts/export.py: torch.export and ONNX round trips equal the PyTorch model on the
reference inputs, and a failed check writes nothing."""
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from models import load_model
from models.export import ExportCheckError, LogitsOnly, check_batch, export_checked
from utils.errors import InputError


def lite_args(repo_root, reference_dir, fmt: str, out) -> list[str]:
    return ["--config", str(repo_root / "config" / "AASIST-L.json"), "--format", fmt, "--out", str(out),
            "--model_path", str(reference_dir / "weights" / "AASIST-L.pth"),
            "--check_inputs", str(reference_dir / "model_golden.npz")]


def export_cli(repo_root, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/export.py", *args], cwd=repo_root, capture_output=True,
                          text=True, timeout=300)


def reported_difference(stdout: str) -> float:
    found = re.search(r"logit difference (\S+) on 3 inputs of 64600 samples, in batches of 1 and 2", stdout)
    return float(found.group(1))


def published_logits(reference_dir) -> tuple[np.ndarray, np.ndarray]:
    golden = np.load(reference_dir / "model_golden.npz")
    return golden["x"], golden["AASIST-L.logits"]


def test_torch_export_round_trip(repo_root, reference_dir, tmp_path):
    """The file the script writes, loaded on its own, gives the published logits (beyond the script's own check)."""
    out = tmp_path / "aasist-l.pt2"
    result = export_cli(repo_root, lite_args(repo_root, reference_dir, "torch-export", out))
    assert result.returncode == 0, result.stderr
    assert reported_difference(result.stdout) <= 1e-4
    x, expected = published_logits(reference_dir)
    logits = torch.export.load(out).module()(torch.from_numpy(x[:2]))  # a batch size the export never saw
    np.testing.assert_allclose(logits.detach().numpy(), expected[:2], atol=1e-4, rtol=0)


def test_onnx_round_trip(repo_root, reference_dir, tmp_path):
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx onnxruntime)")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnx onnxruntime)")
    net = LogitsOnly(load_model(repo_root / "config" / "AASIST-L.json", reference_dir / "weights" / "AASIST-L.pth",
                                device="cpu")).eval()
    out = tmp_path / "aasist-l.onnx"
    x = check_batch(reference_dir / "model_golden.npz", 64600)
    assert export_checked(net, x, "onnx", out, tolerance=1e-4) <= 1e-4
    model = onnx.load(out)
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch"  # dynamic, not a fixed size
    import onnxruntime
    x, expected = published_logits(reference_dir)
    (logits,) = onnxruntime.InferenceSession(str(out)).run(["logits"], {"waveform": x})
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def short_config(repo_root, tmp_path_factory):
    """AASIST-L with nb_samp 4000: the check on seeded random inputs runs in a moment."""
    config = json.loads((repo_root / "config" / "AASIST-L.json").read_text())
    config["model_config"]["nb_samp"] = 4000
    path = tmp_path_factory.mktemp("config") / "short.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def short_net(short_config, reference_dir):
    return LogitsOnly(load_model(short_config, reference_dir / "weights" / "AASIST-L.pth", device="cpu")).eval()


def test_missing_onnx_is_a_clear_error(short_net, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    out = tmp_path / "aasist-l.onnx"
    with pytest.raises(InputError, match="pip install onnx onnxruntime"):
        export_checked(short_net, check_batch(None, 4000), "onnx", out, tolerance=1e-4)
    assert not out.exists()


def test_failed_check_writes_nothing(short_net, tmp_path, monkeypatch):
    def broken_export(net, example):
        return b"model", lambda x: np.full((x.shape[0], 2), 100.0, dtype=np.float32)

    monkeypatch.setattr("models.export.export_torch", broken_export)
    out = tmp_path / "model.pt2"
    with pytest.raises(ExportCheckError, match="the exported model differs from the PyTorch model by "):
        export_checked(short_net, check_batch(None, 4000), "torch-export", out, tolerance=1e-4)
    assert not out.exists()


class TinyNet(torch.nn.Module):
    """(B, T) -> (B, 2): stands in for AASIST where only the check's arithmetic is under test."""

    def __init__(self, nan: bool = False):
        super().__init__()
        self.nan = nan

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        logits = waveform[:, :2] * 10
        return logits * math.nan if self.nan else logits


@pytest.mark.parametrize("pytorch_nan", [False, True], ids=["exported_nan", "both_nan"])
def test_nan_logits_fail_the_check(tmp_path, monkeypatch, pytorch_nan):
    """NaN compares False with everything: a check written `diff > tolerance` would pass it."""
    def nan_export(net, example):
        return b"model", lambda x: np.full((x.shape[0], 2), np.nan, dtype=np.float32)

    monkeypatch.setattr("models.export.export_torch", nan_export)
    out = tmp_path / "model.pt2"
    with pytest.raises(ExportCheckError, match=r"differs from the PyTorch model by nan \(tolerance 0.0001\)"):
        export_checked(TinyNet(nan=pytorch_nan).eval(), check_batch(None, 100), "torch-export", out, tolerance=1e-4)
    assert not out.exists()


def test_check_inputs_must_fit_nb_samp(short_config, reference_dir, repo_root, tmp_path):
    with pytest.raises(InputError, match=re.escape("'x' must be (batch, 4000), got (3, 64600)")):
        check_batch(reference_dir / "model_golden.npz", 4000)
    out = tmp_path / "m.pt2"
    result = export_cli(repo_root, ["--config", str(short_config), "--format", "torch-export", "--out", str(out),
                                    "--model_path", str(reference_dir / "weights" / "AASIST-L.pth"),
                                    "--check_inputs", str(reference_dir / "model_golden.npz")])
    assert result.returncode == 2
    assert "error: --check_inputs " in result.stderr and "'x' must be (batch, 4000), got (3, 64600)" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
