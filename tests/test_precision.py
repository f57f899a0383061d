"""The fast paths: bf16 autocast stays close to fp32, fp32 stays the published numbers; the benchmark runs."""
import json
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
import torch

from data_utils import EvalDataset, read_protocol, split_paths
from models import load_model
from utils.precision import autocast, maybe_compile, resolve_precision
from utils.scores import compute_metrics
from utils.scoring import score_dataset

CPU = torch.device("cpu")
# Largest |bf16 - published| logit measured on the golden inputs (CPU): AASIST 0.0085, AASIST-L 0.040.
BF16_LOGIT_TOLERANCE = 0.1


@pytest.mark.parametrize("name, config", [("AASIST", "config/config.json"), ("AASIST-L", "config/AASIST-L.json")])
def test_bf16_logits_stay_close_to_the_published(name, config, repo_root, reference_dir):
    golden = np.load(reference_dir / "model_golden.npz")
    model = load_model(repo_root / config, reference_dir / "weights" / f"{name}.pth", CPU)
    with torch.no_grad(), autocast("bf16", CPU):
        _, logits = model(torch.from_numpy(golden["x"]))
    assert logits.dtype == torch.float32  # the graph-attention tail runs in fp32
    assert np.abs(logits.numpy() - golden[f"{name}.logits"]).max() > 1e-4  # ... but the encoder did run in bf16
    np.testing.assert_allclose(logits.numpy(), golden[f"{name}.logits"], atol=BF16_LOGIT_TOLERANCE, rtol=0)


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


def test_bf16_scoring_gives_the_fp32_eer_on_la_tiny(repo_root, reference_dir):
    paths = split_paths(reference_dir / "LA_tiny", "eval")
    dataset = EvalDataset(read_protocol(paths.protocol), paths.audio_dir)
    model = load_model(repo_root / "config" / "config.json", reference_dir / "weights" / "AASIST.pth", CPU)
    eer = {p: compute_metrics(score_dataset(model, dataset, 6, CPU, precision=p))["eer_percent"] for p in ("fp32", "bf16")}
    assert eer["bf16"] == eer["fp32"]


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


def test_defaults_per_device():
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    model = torch.nn.Linear(2, 2)
    assert maybe_compile(model, None, CPU) is model and maybe_compile(model, False, CPU) is model
    cuda = torch.device("cuda")
    with mock.patch("torch.compile", lambda m, **kw: kw["mode"]):  # which compile mode each case asks for
        assert maybe_compile(model, None, cuda) == "reduce-overhead"          # one GPU: CUDA graphs
        assert maybe_compile(model, None, cuda, distributed=True) is None     # DDP: plain compile
        assert maybe_compile(model, True, CPU) is None                        # CPU: no CUDA graphs
        assert maybe_compile(model, None, cuda, cuda_graphs=False) is None


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
    assert report["loader_items_per_s_per_worker"] > 0
    assert "ratio" in result.stdout and "workers" in result.stdout


def test_benchmark_baseline_is_the_same_network(repo_root, load_script):
    benchmark = load_script("benchmark")
    from models import AASIST
    from utils.config import load_config
    torch.manual_seed(0)
    model = AASIST(load_config(repo_root / "config" / "demo.json").model_config).eval()
    x = torch.randn(2, 8000)
    with torch.no_grad():
        _, ours = model(x)
        with benchmark.published_work():
            _, published = model(x)
    assert torch.equal(ours, published)


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
