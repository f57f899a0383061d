"""scripts/export.py: torch.export and ONNX round trips equal the PyTorch model on the reference inputs."""
import json
import re
import sys

import numpy as np
import pytest


@pytest.fixture(scope="module")
def export(load_script):
    return load_script("export")


def lite_args(repo_root, reference_dir, fmt: str, out) -> list[str]:
    return ["--config", str(repo_root / "config" / "AASIST-L.json"), "--format", fmt, "--out", str(out),
            "--model_path", str(reference_dir / "weights" / "AASIST-L.pth"),
            "--check_inputs", str(reference_dir / "model_golden.npz")]


def reported_difference(stdout: str) -> float:
    found = re.search(r"logit difference (\S+) on 3 inputs of 64600 samples, in batches of 1 and 2", stdout)
    return float(found.group(1))


def published_logits(reference_dir) -> tuple[np.ndarray, np.ndarray]:
    golden = np.load(reference_dir / "model_golden.npz")
    return golden["x"], golden["AASIST-L.logits"]


def test_torch_export_round_trip(export, repo_root, reference_dir, tmp_path, capsys):
    """The written file, loaded on its own, gives the published logits (beyond the script's own check)."""
    import torch
    out = tmp_path / "aasist-l.pt2"
    assert export.main(lite_args(repo_root, reference_dir, "torch-export", out)) == 0
    assert reported_difference(capsys.readouterr().out) <= 1e-4
    x, expected = published_logits(reference_dir)
    logits = torch.export.load(out).module()(torch.from_numpy(x[:2]))  # a batch size the export never saw
    np.testing.assert_allclose(logits.detach().numpy(), expected[:2], atol=1e-4, rtol=0)


def test_onnx_round_trip(export, repo_root, reference_dir, tmp_path, capsys):
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx onnxruntime)")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnx onnxruntime)")
    out = tmp_path / "aasist-l.onnx"
    code = export.main(lite_args(repo_root, reference_dir, "onnx", out))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert reported_difference(captured.out) <= 1e-4
    model = onnx.load(out)
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch"  # dynamic, not a fixed size
    import onnxruntime
    x, expected = published_logits(reference_dir)
    (logits,) = onnxruntime.InferenceSession(str(out)).run(["logits"], {"waveform": x})
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_missing_onnx_is_a_clear_error(export, repo_root, reference_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    out = tmp_path / "aasist-l.onnx"
    assert export.main(lite_args(repo_root, reference_dir, "onnx", out)) == 2
    assert "pip install onnx onnxruntime" in capsys.readouterr().err and not out.exists()


@pytest.fixture
def short_config(repo_root, tmp_path):
    """AASIST-L with nb_samp 4000: the check on seeded random inputs runs in a moment."""
    config = json.loads((repo_root / "config" / "AASIST-L.json").read_text())
    config["model_config"]["nb_samp"] = 4000
    path = tmp_path / "short.json"
    path.write_text(json.dumps(config))
    return path


def test_failed_check_writes_nothing(export, short_config, reference_dir, tmp_path, capsys, monkeypatch):
    def broken_export(net, example):
        return b"model", lambda x: np.full((x.shape[0], 2), 100.0, dtype=np.float32)

    monkeypatch.setattr(export, "export_torch", broken_export)
    out = tmp_path / "model.pt2"
    args = ["--config", str(short_config), "--model_path", str(reference_dir / "weights" / "AASIST-L.pth"),
            "--format", "torch-export", "--out", str(out)]
    assert export.main(args) == 1
    assert "the exported model differs from the PyTorch model by " in capsys.readouterr().err
    assert not out.exists()


def test_check_inputs_must_fit_nb_samp(export, short_config, reference_dir, tmp_path, capsys):
    args = ["--config", str(short_config), "--model_path", str(reference_dir / "weights" / "AASIST-L.pth"),
            "--format", "torch-export", "--out", str(tmp_path / "m.pt2"),
            "--check_inputs", str(reference_dir / "model_golden.npz")]
    assert export.main(args) == 2
    assert "'x' must be (batch, 4000), got (3, 64600)" in capsys.readouterr().err
