"""Helpers that several test modules use: a tiny AASIST and a config that trains it on a demo corpus in seconds."""
import json
from pathlib import Path

import pytest

TINY_MODEL = {"architecture": "AASIST", "nb_samp": 4000, "first_conv": 128,
              "filts": [70, [1, 4], [4, 4], [4, 8], [8, 8]], "gat_dims": [8, 8],
              "pool_ratios": [0.5, 0.7, 0.5, 0.5], "temperatures": [2.0, 2.0, 100.0, 100.0]}


def tiny_config(repo_root: Path, corpus: Path, path: Path, **changes) -> Path:
    """config/demo.json with TINY_MODEL on `corpus`: 2 epochs of batch 8, no loader workers, the weight average
    from the first epoch on; `changes` override keys. Written to `path`, which is returned."""
    config = json.loads((repo_root / "config" / "demo.json").read_text())
    config.update(database_path=str(corpus), model_config=TINY_MODEL, batch_size=8, num_epochs=2,
                  num_workers=0, swa_max_dev_eer=100.0, eval_batch_size=16)
    config.update(changes)
    path.write_text(json.dumps(config))
    return path


# A wav2vec 2.0 front end small enough to train in seconds (XLS-R's layout, 32 wide, one layer).
TINY_SSL = {"conv_feature_layers": [[16, 10, 5], [16, 3, 2], [16, 3, 2], [16, 3, 2], [16, 3, 2], [16, 2, 2], [16, 2, 2]],
            "encoder_layers": 1, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4,
            "conv_pos": 8, "conv_pos_groups": 4, "final_dim": 8, "latent_vars": 4, "latent_groups": 2}


def train_and_evaluate(repo_root: Path, tmp_path: Path, model_config: dict) -> tuple[Path, dict]:
    """scripts/train.py (one epoch) then scripts/evaluate.py on the eval part of a small demo corpus, with
    `model_config`, one thread each; returns the best weights and evaluate.py's JSON summary."""
    import os
    import subprocess
    import sys
    from data_utils.demo import write_demo_corpus
    write_demo_corpus(tmp_path / "LA", seed=0, scale=0.1)
    config = json.loads((repo_root / "config" / "demo.json").read_text())
    config.update(database_path=str(tmp_path / "LA"), model_config=model_config, batch_size=8, num_epochs=1,
                  num_workers=0, eval_batch_size=16)
    (tmp_path / "tiny.json").write_text(json.dumps(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as one_thread, for the scripts

    def run(*args: str) -> None:
        result = subprocess.run([sys.executable, *args], cwd=repo_root, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr

    run("scripts/train.py", "--config", str(tmp_path / "tiny.json"), "--output_dir", str(tmp_path / "run"))
    best = tmp_path / "run" / "weights" / "best.pth"
    run("scripts/evaluate.py", "--config", str(tmp_path / "tiny.json"), "--eval_set", "eval", "--model_path", str(best),
        "--output_dir", str(tmp_path / "eval"), "--json", str(tmp_path / "eval.json"))
    return best, json.loads((tmp_path / "eval.json").read_text())


def reference_listing(path: Path) -> list[tuple[str, tuple[int, ...], str]]:
    """A reference `keys*.txt` listing of lines `name (shape) dtype`: (name, shape, dtype) in order."""
    import re
    rows = []
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"(\S+) \(([\d, ]*)\) (\S+)", line.strip())
        assert match, f"{path}: unreadable line {line!r}"
        rows.append((match[1], tuple(int(v) for v in match[2].split(",") if v.strip()), match[3]))
    return rows


def state_dict_layout(state_dict) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, dtype) of each tensor, in order, as `reference_listing` reads them."""
    return [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state_dict.items()]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run as fast on one thread as on two, and a busy machine does not stall them (two threads
    waiting on each other there took 70x as long). In force in each test module that imports it."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def checkpointing_gradient_difference(model_config: dict) -> tuple[float, set[str], list[int]]:
    """One training step's gradients of an XLS-R model built from `model_config`, without and with gradient
    checkpointing: the largest difference, the names of the parameters that got one (the same in both), and how
    often the first transformer layer ran in each step (checkpointed: again in the backward pass)."""
    import torch
    from models import build_model
    x = 0.1 * torch.randn(4, model_config["nb_samp"], generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 0, 1])
    grads, layer_calls = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build_model(model_config).train()
        if checkpointing:
            model.use_gradient_checkpointing()
        calls = []
        model.ssl_model.model.wav2vec2.encoder.layers[0].attention.register_forward_hook(lambda *_: calls.append(1))
        torch.nn.functional.cross_entropy(model(x)[1], y).backward()
        grads.append({k: p.grad for k, p in model.named_parameters() if p.grad is not None})
        layer_calls.append(len(calls))
    assert grads[0].keys() == grads[1].keys()
    return max((grads[0][k] - grads[1][k]).abs().max().item() for k in grads[0]), set(grads[0]), layer_calls


def export_difference(net, x, fmt: str, out: Path) -> float:
    """`models.export.export_checked` of `net` (put in eval mode) on the check batch `x` at 1e-5: the largest
    logit difference of the export written to `out`; ONNX skipped where onnx or onnxruntime is missing."""
    if fmt == "onnx":
        pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx onnxruntime)")
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnx onnxruntime)")
    from models.export import LogitsOnly, export_checked
    difference = export_checked(LogitsOnly(net).eval(), x, fmt, out, 1e-5)
    assert out.is_file()
    return difference
