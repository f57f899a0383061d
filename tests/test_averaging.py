"""Checkpoint averaging (models/averaging.py, scripts/average_checkpoints.py): the mean of each tensor, BatchNorm
statistics included, loading like any weights file; bad input named."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from models import build_model, load_model
from models.averaging import average_weights, best_epochs
from utils.errors import InputError

from helpers import TINY_MODEL


def _epochs(tmp_path, count=3):
    """`count` perturbed copies of a tiny AASIST's weights, saved as train.py names its epochs."""
    torch.manual_seed(0)
    base = build_model(TINY_MODEL).state_dict()
    paths = []
    for i in range(count):
        sd = {k: (v + torch.randn_like(v) if v.is_floating_point() else v + 3 * i + 1) for k, v in base.items()}
        paths.append(tmp_path / "weights" / f"epoch_{2 * i}_{10.0 - i:03.3f}.pth")
        paths[-1].parent.mkdir(exist_ok=True)
        torch.save(sd, paths[-1])
    return paths


def test_every_tensor_is_the_mean_and_the_result_loads(tmp_path):
    paths = _epochs(tmp_path)
    loaded = [torch.load(p, weights_only=True) for p in paths]
    averaged = average_weights(paths)
    for key, value in averaged.items():
        stack = np.stack([sd[key].numpy() for sd in loaded])
        if value.is_floating_point():
            np.testing.assert_allclose(value.numpy(), stack.mean(0), rtol=1e-6, atol=1e-6)
        else:  # num_batches_tracked: the mean, truncated, as a float mean loaded into the integer buffer gives
            assert value.dtype == torch.int64 and value.item() == int(stack.mean(0))
    assert any("running_var" in k for k in averaged)  # BatchNorm statistics averaged, not re-estimated
    torch.save(averaged, tmp_path / "avg.pth")
    load_model(TINY_MODEL, tmp_path / "avg.pth", device="cpu")


def test_best_epochs_and_the_script(tmp_path, repo_root):
    paths = _epochs(tmp_path, 4)                      # dev EER 10, 9, 8, 7 at epochs 0, 2, 4, 6
    assert best_epochs(tmp_path, 2) == paths[2:]
    run = lambda *a: subprocess.run([sys.executable, "scripts/average_checkpoints.py", *map(str, a)],
                                    cwd=repo_root, capture_output=True, text=True, timeout=120)
    result = run("--run_dir", tmp_path, "--best", 3)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "weights" / "avg3_best.pth"
    expected = average_weights(paths[1:])
    assert all(torch.equal(v, expected[k]) for k, v in torch.load(out, weights_only=True).items())
    result = run("--run_dir", tmp_path, "--best", 3)  # never replaces a result
    assert result.returncode == 2 and "exists; not replacing it" in result.stderr
    result = run("--run_dir", tmp_path, "--best", 9)
    assert result.returncode == 2 and "fewer than the 9" in result.stderr and "Traceback" not in result.stderr


def test_weights_of_other_models_are_refused(tmp_path):
    paths = _epochs(tmp_path, 2)
    other = {k: v for k, v in torch.load(paths[1], weights_only=True).items() if not k.startswith("out_layer")}
    torch.save(other, paths[1])
    with pytest.raises(InputError, match="hold different tensors .*out_layer"):
        average_weights(paths)
