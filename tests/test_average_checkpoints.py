"""Checkpoint averaging (models.loading.average_weights, scripts/average_checkpoints.py): the mean of saved
epochs' weights, BatchNorm statistics averaged as Nes2Net's `main.py --num_average_model` averages them."""
import json
import subprocess
import sys

import pytest
import torch

from models import build_model, load_model
from models.loading import average_weights
from utils.errors import InputError

from helpers import TINY_MODEL


@pytest.fixture()
def epochs(tmp_path) -> list:
    """Three saved 'epochs' of one tiny AASIST: other weights, other BatchNorm statistics and batch counts."""
    paths = []
    for seed, batches in ((0, 10), (1, 11), (2, 15)):
        torch.manual_seed(seed)
        state_dict = build_model(TINY_MODEL).state_dict()
        for k, v in state_dict.items():
            if k.endswith("num_batches_tracked"):
                v.fill_(batches)
            elif k.endswith("running_var"):
                v.uniform_(0.5, 2.0)
        torch.save(state_dict, tmp_path / f"epoch_{seed}.pth")
        paths.append(tmp_path / f"epoch_{seed}.pth")
    return paths


def test_every_tensor_is_the_mean(epochs):
    saved = [torch.load(p, weights_only=True) for p in epochs]
    averaged = average_weights(epochs)
    assert list(averaged) == list(saved[0])
    for k, v in averaged.items():
        assert v.dtype == saved[0][k].dtype, k
        if k.endswith("num_batches_tracked"):
            assert int(v) == 12  # (10 + 11 + 15) / 3, rounded down as the published float average loads into int64
        else:
            torch.testing.assert_close(v, sum(s[k] for s in saved) / 3, rtol=0, atol=1e-6, msg=k)
    assert any(k.endswith("running_mean") for k in averaged)  # BatchNorm statistics averaged, not recomputed
    same = average_weights([epochs[0]] * 3)
    assert all(torch.equal(same[k], saved[0][k]) for k in same)


def test_files_of_other_models_are_refused_by_name(epochs, tmp_path):
    other = torch.load(epochs[1], weights_only=True)
    other.pop("out_layer.bias")
    torch.save(other, tmp_path / "other.pth")
    with pytest.raises(InputError, match=r"other.pth is not the same model as .*epoch_0.pth: missing \(1\): out_layer.bias"):
        average_weights([epochs[0], tmp_path / "other.pth"])
    with pytest.raises(InputError, match="at least two weights files, got 1"):
        average_weights(epochs[:1])


def run_script(repo_root, *args):
    return subprocess.run([sys.executable, "scripts/average_checkpoints.py", *map(str, args)], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)


def test_script_writes_weights_that_load_and_never_replaces_a_file(repo_root, epochs, tmp_path):
    config = {"database_path": "LA", "batch_size": 2, "num_epochs": 1, "model_config": TINY_MODEL,
              "optim_config": {"optimizer": "adam", "base_lr": 1e-4}}
    (tmp_path / "tiny.json").write_text(json.dumps(config))
    out = tmp_path / "avg3.pth"
    result = run_script(repo_root, *epochs, "--out", out, "--config", tmp_path / "tiny.json")
    assert result.returncode == 0, result.stderr
    model = load_model(TINY_MODEL, out, device="cpu")
    expected = average_weights(epochs)
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    again = run_script(repo_root, *epochs, "--out", out)
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "exists" in again.stderr
    assert again.stderr.count("\n") == 1
