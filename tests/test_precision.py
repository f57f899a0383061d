"""The fast paths: bf16 autocast stays close to fp32, fp32 stays the published numbers; the benchmark runs."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from models import load_model
from utils.config import load_config
from utils.precision import Speed, autocast, maybe_compile, resolve_speed

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
# Bounds on |bf16 - published| logits over the golden inputs, as the README states them; measured on a
# CPU: AASIST 0.0099, AASIST-L 0.020 (0.0085 and 0.040 before bn2 was folded into conv1 for scoring).
BF16_LOGIT_TOLERANCE = {"AASIST": 0.02, "AASIST-L": 0.1}


@pytest.mark.parametrize("name, config", [("AASIST", "config/config.json"), ("AASIST-L", "config/AASIST-L.json")])
def test_bf16_logits_stay_close_to_the_published(name, config, repo_root, reference_dir):
    golden = np.load(reference_dir / "model_golden.npz")
    model = load_model(repo_root / config, reference_dir / "weights" / f"{name}.pth", CPU)
    with torch.no_grad(), autocast("bf16", CPU):
        _, logits = model(torch.from_numpy(golden["x"]))
    assert logits.dtype == torch.float32  # the graph-attention tail runs in fp32
    assert np.abs(logits.numpy() - golden[f"{name}.logits"]).max() > 1e-4  # ... but the encoder did run in bf16
    np.testing.assert_allclose(logits.numpy(), golden[f"{name}.logits"], atol=BF16_LOGIT_TOLERANCE[name], rtol=0)


def test_graph_attention_tail_runs_in_fp32_under_autocast(repo_root):
    from models import AASIST
    from utils.config import load_config
    model = AASIST(load_config(repo_root / "config" / "demo.json").model_config).eval()
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = output.dtype
        return hook
    model.encoder.register_forward_hook(record("encoder"))
    model.GAT_layer_S.register_forward_hook(record("tail"))
    with torch.no_grad(), autocast("bf16", CPU):
        model(torch.randn(2, 12000))
    assert seen == {"encoder": torch.bfloat16, "tail": torch.float32}


def test_bf16_training_step_keeps_fp32_weights_and_gradients(repo_root):
    from models import AASIST
    from utils.config import load_config
    model = AASIST(load_config(repo_root / "config" / "demo.json").model_config).train()
    with autocast("bf16", CPU):
        _, logits = model(torch.randn(4, 16000))
    loss = torch.nn.functional.cross_entropy(logits.float(), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32) for p in model.parameters())


def test_one_rule_for_the_speed_settings(repo_root):
    config = load_config(repo_root / "config" / "config.json")  # precision "auto", the rest unset
    assert resolve_speed(config, CPU, "train") == Speed("fp32", cudnn_deterministic=True)
    assert resolve_speed(config, CPU, "score") == Speed("fp32", channels_last=True)
    # On CUDA: bf16, channels-last, compiled with CUDA graphs for training; scoring stays fp32 eager.
    assert resolve_speed(config, CUDA, "train") == Speed("bf16", channels_last=True, compile=True, cuda_graphs=True)
    assert resolve_speed(config, CUDA, "train", distributed=True).cuda_graphs is False  # DDP: plain compile
    assert resolve_speed(config, CUDA, "score") == Speed("fp32")
    assert resolve_speed(config, CUDA, "score", precision="bf16", compile=True) == \
        Speed("bf16", channels_last=True, compile=True, cuda_graphs=True)
    assert resolve_speed(config, CPU, "score", compile=True).cuda_graphs is False
    model = torch.nn.Linear(2, 2)
    assert maybe_compile(model, Speed()) is model


def test_benchmark_runs_and_reports_ratios(repo_root, tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "scripts/benchmark.py", "--config", "config/demo.json", "--device", "cpu", "--batch_size", "2",
         "--precision", "both", "--warmup", "0", "--repeats", "1", "--loader_items", "4", "--json", str(out)],
        cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert [m["mode"] for m in report["modes"]] == ["published (fp32 eager)", "fp32 eager", "bf16 eager"]
    assert all(m["train_samples_per_s"] > 0 and m["score_samples_per_s"] > 0 for m in report["modes"])
    assert all(m["first_train_step_s"] > 0 and m["first_score_step_s"] > 0 for m in report["modes"])
    assert report["loader_items_per_s_per_worker"] > 0
    assert "ratio" in result.stdout and "workers" in result.stdout


def test_compiled_training_with_freq_aug_does_not_recompile_per_draw(repo_root):
    from torch._dynamo.utils import counters
    from models import AASIST
    from utils.config import load_config
    torch._dynamo.reset()
    counters.clear()
    model = AASIST(load_config(repo_root / "config" / "demo.json").model_config).train()
    compiled = torch.compile(model, backend="eager", dynamic=False)  # dynamo's graph capture alone, no codegen
    for _ in range(5):
        _, logits = compiled(torch.randn(2, 12000), freq_aug=True)
        logits.sum().backward()
    # One graph before the random mask and one after it; a graph per draw would be recompiling.
    assert counters["stats"]["unique_graphs"] <= 2


def test_largest_fitting_batch_search():
    from utils.experiments.benchmark import largest_fitting
    for cap in (0, 1, 5, 24, 25, 100, 4095, 4096, 5000):
        tried = []
        found = largest_fitting(lambda n: tried.append(n) or n <= cap, 24, 4096)
        assert found == min(cap, 4096)
        assert len(tried) <= 20 and len(set(tried)) == len(tried)  # a failed size (a near-OOM step) is not retried


def test_kernel_table_names_the_operator_behind_each_kernel():
    """The profile's attribution (benchmark --profile on CUDA): a kernel's time goes to the operator that
    launched it, with its input shapes, and to the outermost operator above; largest first."""
    from types import SimpleNamespace as Event
    from torch.autograd.profiler_util import Kernel
    from utils.experiments.benchmark import kernel_table
    conv2d = Event(name="aten::conv2d", input_shapes=[[256, 1, 24, 21490]], kernels=[], cpu_parent=None)
    cudnn = Event(name="aten::cudnn_convolution", input_shapes=[[256, 1, 24, 21490], [32, 1, 2, 3]], cpu_parent=conv2d,
                  kernels=[Kernel("implicit_convolve_sgemm", 0, 3000.0), Kernel("nchwToNhwcKernel", 0, 500.0)])
    copy = Event(name="aten::copy_", input_shapes=[[24, 32, 24, 7163]], cpu_parent=None,
                 kernels=[Kernel("nchwToNhwcKernel", 0, 250.0), Kernel("nchwToNhwcKernel", 0, 250.0)])
    lines = kernel_table([conv2d, cudnn, copy]).splitlines()
    assert "implicit_convolve_sgemm <- aten::cudnn_convolution [[256, 1, 24, 21490], [32, 1, 2, 3]] <- aten::conv2d" \
        in lines[1] and lines[1].split()[:3] == ["3.00", "75.0", "1"]
    assert "nchwToNhwcKernel <- aten::cudnn_convolution" in lines[2] or "nchwToNhwcKernel <- aten::cudnn_convolution" \
        in lines[3]
    assert any(line.split()[:3] == ["0.50", "12.5", "2"] and "<- aten::copy_ [[24, 32, 24, 7163]] <- aten::copy_" in line
               for line in lines)
    assert lines[-1].split()[:2] == ["4.00", "100.0"]
    assert kernel_table([conv2d]) == "(no GPU kernels recorded)\n"


def test_benchmark_memory_options_need_cuda(repo_root):
    result = subprocess.run([sys.executable, "scripts/benchmark.py", "--config", "config/demo.json", "--device", "cpu",
                             "--max_batch"], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--device cuda" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "scripts/benchmark.py", "--config", "config/demo.json", "--device", "cpu",
                             "--modes", "published,fp32+gc"], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "SSL_AASIST" in result.stderr
