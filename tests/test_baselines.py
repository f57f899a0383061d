"""The published baselines RawNet2 (`RawNet2Spoof`) and RawGAT-ST (`RawNetGatSpoofST`) against the published code's
outputs and state-dict layout (../shared/reference/baselines), its configs, and end to end: train.py, evaluate.py,
infer.py, export.py and benchmark.py."""
import copy
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from conftest import IN_CI
from models import build_model, load_model, load_state_dict, score
from models.fast import InParts, use_channels_last
from models.inference import window_starts
from models.layers import frequency_mask
from models.loading import load_weights_into
from utils.engine import training
from utils.config import CLASS_WEIGHTS, config_from_dict, load_config
from utils.errors import InputError

BASELINES = ("RawNet2Spoof", "RawNetGatSpoofST")

# The published repository's config/RawNet2_baseline.conf and config/RawGATST_baseline.conf, as distributed.
PUBLISHED_CONFS = {
    "RawNet2_baseline": """{
    "database_path": "./LA/",
    "asv_score_path": "ASVspoof2019_LA_asv_scores/ASVspoof2019.LA.asv.eval.gi.trl.scores.txt",
    "model_path": "/home1/irteam/jeeweon/git/AsvSpoofDetection/exp_result/LAmodelRawNet2Spoof_ep100_bs32_lr0.0001/weights/best.pth",
    "batch_size": 32,
    "lr": 0.0001,
    "weight_decay": 0.0001,
    "num_epochs": 100,
    "loss": "CCE",
    "track": "LA",
    "eval_output": "eval_scores_using_best_dev_model.txt",
    "cudnn_deterministic_toggle": "True",
    "cudnn_benchmark_toggle": "False",
    "model_config": {
        "architecture": "RawNet2Spoof",
        "nb_samp": 64600,
        "first_conv": 1024,
        "in_channels": 1,
        "filts": [20, [20, 20], [20, 128], [128, 128]],
        "blocks": [2, 4],
        "nb_fc_node": 1024,
        "gru_node": 1024,
        "nb_gru_layer": 3,
        "nb_classes": 2
    },
    "optim_config": {
        "optimizer": "adam", 
        "amsgrad": "False",
        "base_lr": 0.0001,
        "lr_min": 0.000005,
        "betas": [0.9, 0.999],
        "weight_decay": 0.0001,
        "scheduler": "cosine"
    }
}
""",
    "RawGATST_baseline": """{
    "database_path": "./LA/",
    "asv_score_path": "ASVspoof2019_LA_asv_scores/ASVspoof2019.LA.asv.eval.gi.trl.scores.txt",
    "model_path": "/home1/irteam/jeeweon/git/AsvSpoofDetection/exp_result/LAmodelRawNetGatSpoofST_ep100_bs24_lr0.0001/weights/epoch_12.pth",
    "batch_size": 24,
    "num_epochs": 100,
    "loss": "CCE",
    "track": "LA",
    "eval_output": "eval_scores_using_best_dev_model.txt",
    "cudnn_deterministic_toggle": "True",
    "cudnn_benchmark_toggle": "False",
    "model_config": {
        "architecture": "RawNetGatSpoofST",
        "nb_samp": 64600,
        "first_conv": 128,
        "filts": [70, [1, 32], [32, 32], [32, 64], [64, 64]]
    },
    "optim_config": {
        "optimizer": "adam", 
        "amsgrad": "False",
        "base_lr": 0.0001,
        "lr_min": 0.000005,
        "betas": [0.9, 0.999],
        "weight_decay": 0.0001,
        "scheduler": "cosine"
    }
}
""",
}
PUBLISHED_BATCH = {"RawNet2_baseline": 32, "RawGATST_baseline": 24}

# Tiny networks of each architecture. RawGAT-ST's projections fix its input at 64,600 samples, its last encoder
# blocks at 64 channels and its sinc filters at 66 to 71; only its first blocks can be narrow.
TINY = {
    "RawNet2Spoof": {"architecture": "RawNet2Spoof", "nb_samp": 8000, "first_conv": 128,
                     "filts": [8, [8, 8], [8, 16], [16, 16]], "gru_node": 16, "nb_fc_node": 16, "nb_gru_layer": 2},
    "RawNetGatSpoofST": {"architecture": "RawNetGatSpoofST", "nb_samp": 64600, "first_conv": 128,
                         "filts": [70, [1, 2], [2, 2], [2, 64], [64, 64]]},
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A busy two-core machine runs these small models no slower on one thread, and never stalls on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ref(reference_dir) -> Path:
    path = reference_dir / "baselines"
    if not path.is_dir():
        message = f"baseline reference data not found at {path}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def golden(ref) -> dict:
    return dict(np.load(ref / "golden.npz"))


def model_config(ref: Path, arch: str) -> dict:
    """The `model_config` the reference weights of `arch` were made with."""
    return json.loads((ref / f"{arch}_config.json").read_text())


def listing(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def layout(state_dict: dict) -> list[str]:
    """A state dict as the reference key lists write it: name, shape and dtype, in order."""
    return [f"{k} {tuple(v.shape)} {str(v.dtype).removeprefix('torch.')}" for k, v in state_dict.items()]


def recipe(repo_root: Path, arch: str) -> Path:
    """The one config in config/ that trains `arch`."""
    found = [p for p in sorted((repo_root / "config").glob("*.json"))
             if json.loads(p.read_text())["model_config"]["architecture"] == arch]
    assert len(found) == 1, found
    return found[0]


# --- the published outputs and layout ------------------------------------------------------------------

@pytest.mark.parametrize("arch", BASELINES)
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_published_outputs(ref, golden, arch, fast):
    """Both outputs of `forward`, for every reference input, within 1e-5; an input the published model cannot run
    (RawGAT-ST at another length than nb_samp) is refused with a message naming the model and the lengths."""
    cfg = model_config(ref, arch)
    if fast:
        model = load_model(cfg, ref / f"{arch}.pth", device="cpu")
    else:
        model = build_model(cfg, fast=False, pretrained=False)
        load_weights_into(model, load_state_dict(ref / f"{arch}.pth"))
        model.eval()
    inputs = [k.removeprefix("input_") for k in golden if k.startswith("input_")]
    compared = 0
    for name in inputs:
        x = torch.from_numpy(golden[f"input_{name}"])
        if f"{arch}_{name}_output" not in golden:
            assert model.fixed_length and x.shape[1] != model.nb_samp, name
            with pytest.raises(InputError, match=f"{arch} takes exactly {cfg['nb_samp']} samples .*got {x.shape[1]}"):
                model(x)
            continue
        with torch.no_grad():
            last_hidden, output = model(x)
        np.testing.assert_allclose(last_hidden.numpy(), golden[f"{arch}_{name}_last_hidden"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(output.numpy(), golden[f"{arch}_{name}_output"], rtol=0, atol=1e-5)
        compared += 1
    assert compared >= 1


def test_rawgat_st_channels_last_and_scoring_in_parts_give_the_published_outputs(ref, golden):
    arch = "RawNetGatSpoofST"
    model = use_channels_last(load_model(model_config(ref, arch), ref / f"{arch}.pth", device="cpu"))
    x = torch.from_numpy(golden["input_x64600"])
    in_parts = InParts(model, limit=model.largest_activation(x.shape[1]))  # one utterance a part
    with torch.no_grad():
        for net in (model, in_parts):
            np.testing.assert_allclose(net(x)[1].numpy(), golden[f"{arch}_x64600_output"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", BASELINES)
def test_state_dict_layout_is_the_published_one(ref, repo_root, arch):
    """Names, order, shapes and dtypes: of a model built from the reference config, and of one built from the
    recipe in config/ at the published sizes."""
    assert layout(build_model(model_config(ref, arch)).state_dict()) == listing(ref / f"{arch}_keys.txt")
    full = load_config(recipe(repo_root, arch)).model_config
    assert layout(build_model(full).state_dict()) == listing(ref / f"{arch}_keys_published.txt")


@pytest.mark.parametrize("arch", BASELINES)
def test_weights_move_both_ways_unchanged(ref, arch, tmp_path):
    """Published weights load strictly, and the model's state dict saved again is the published file's: the same
    names in the same order, shapes, dtypes and values (what the published code's strict load needs)."""
    published = torch.load(ref / f"{arch}.pth", weights_only=True)
    model = load_model(model_config(ref, arch), ref / f"{arch}.pth", device="cpu")
    torch.save(model.state_dict(), tmp_path / "back.pth")
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert list(back) == list(published)
    assert all(back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in published.items())


# --- configs ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PUBLISHED_CONFS)
def test_published_conf_loads_unchanged_and_matches_the_recipe(repo_root, tmp_path, name):
    (tmp_path / f"{name}.conf").write_text(PUBLISHED_CONFS[name])
    published = load_config(tmp_path / f"{name}.conf")
    ours = load_config(repo_root / "config" / f"{name}.json")
    raw = json.loads(PUBLISHED_CONFS[name])["model_config"]
    assert published.model_config == ours.model_config
    assert {k: getattr(ours.model_config, k) for k in raw} == raw
    assert (ours.batch_size, ours.num_epochs, ours.freq_aug) == (PUBLISHED_BATCH[name], 100, False)
    assert (published.batch_size, published.num_epochs) == (ours.batch_size, ours.num_epochs)
    o = ours.optim_config
    assert (o.optimizer, o.base_lr, o.weight_decay, o.scheduler, o.lr_min, o.betas, o.amsgrad) == \
        ("adam", 1e-4, 1e-4, "cosine", 5e-6, [0.9, 0.999], False)
    assert published.optim_config == o


def test_top_level_lr_must_agree_with_optim_config(tmp_path):
    raw = json.loads(PUBLISHED_CONFS["RawNet2_baseline"])
    with pytest.raises(InputError, match=r"lr must be left out or equal to optim_config.base_lr \(0.0001\).*0.001"):
        config_from_dict({**raw, "lr": 0.001})
    with pytest.raises(InputError, match="weight_decay must be left out or equal to optim_config.weight_decay"):
        config_from_dict({**raw, "weight_decay": 0.0})


def with_model(arch: str, **changes) -> dict:
    return {"database_path": "LA", "batch_size": 2, "num_epochs": 1,
            "optim_config": {"optimizer": "adam", "base_lr": 1e-4}, "model_config": {**TINY[arch], **changes}}


@pytest.mark.parametrize("config, message", [
    (with_model("RawNetGatSpoofST", nb_samp=48000), "model_config.nb_samp must be a length that leaves 23 time nodes"),
    (with_model("RawNetGatSpoofST", filts=[70, [1, 2], [2, 2], [2, 32], [32, 32]]),
     r"model_config.filts\[4\] must be \[64, 64\]"),
    (with_model("RawNetGatSpoofST", filts=[40, [1, 2], [2, 2], [2, 64], [64, 64]]), r"model_config.filts\[0\] must be"),
    (with_model("RawNetGatSpoofST", filts=[70, [1, 2], [4, 4], [4, 64], [64, 64]]),
     r"model_config.filts\[2\]\[0\] must be"),
    (with_model("RawNetGatSpoofST", gat_dims=[8, 8]), "model_config.gat_dims must be left out for RawNetGatSpoofST"),
    ({**with_model("RawNet2Spoof"), "freq_aug": True}, "freq_aug must be false for RawNet2Spoof"),
    (with_model("RawNet2Spoof", filts=[8, [8, 16], [16, 16], [16, 16]]), r"model_config.filts\[1\] must be \[8, 8\]"),
    (with_model("RawNet2Spoof", filts=[8, [8, 8], [16, 16], [16, 16]]), r"model_config.filts\[2\]\[0\] must be"),
    (with_model("RawNet2Spoof", nb_classes=3), "model_config.nb_classes must be 2"),
    (with_model("RawNet2Spoof", in_channels=2), "model_config.in_channels must be 1"),
    (with_model("RawNet2Spoof", nb_samp=2000), "model_config.nb_samp must be at least 2315"),
    (with_model("RawNet2Spoof", gru_node=0), "model_config.gru_node must be positive"),
])
def test_bad_baseline_config_names_the_key(config, message):
    with pytest.raises(InputError, match=message):
        config_from_dict(config)


# --- what the published code does that looks odd -----------------------------------------------------------

def test_rawnet2_builds_the_published_blocks_without_changing_the_callers_config(ref):
    cfg = model_config(ref, "RawNet2Spoof")
    before = copy.deepcopy(cfg)
    model = build_model(cfg)
    assert cfg == before  # the published constructor sets filts[2][0] = filts[2][1] in its caller's dict
    width = cfg["filts"][2][1]
    assert [model.get_submodule(f"block{i}")[0].conv1.in_channels for i in range(6)] == \
        [cfg["filts"][0]] * 2 + [cfg["filts"][2][0]] + [width] * 3
    build_model(cfg)  # again, from the same dict: the same model
    assert cfg == before


def test_rawnet2_output_is_log_probabilities_and_training_normalises_them_again():
    """The published forward ends in log_softmax and the published training applies cross-entropy to that output:
    `training.training_step` does the same. The second log-softmax changes nothing (log-probabilities are already
    normalised): the loss is the weighted negative log-likelihood of the output."""
    torch.manual_seed(0)
    model = build_model(TINY["RawNet2Spoof"]).train()
    x, y = 0.1 * torch.randn(4, 8000), torch.tensor([0, 1, 0, 1])
    weight = torch.tensor(CLASS_WEIGHTS)
    with torch.no_grad():
        _, output = model(x)  # no dropout: training mode is deterministic
    np.testing.assert_allclose(output.exp().sum(dim=1).numpy(), 1.0, rtol=0, atol=1e-6)
    expected = F.nll_loss(F.log_softmax(output, dim=1), y, weight=weight)
    loss = training.training_step(model, torch.optim.SGD(model.parameters(), lr=0.0), x, y, weight, "fp32")
    assert abs(loss.item() - expected.item()) < 1e-6
    assert abs(loss.item() - F.nll_loss(output, y, weight=weight).item()) < 1e-6
    assert torch.equal(model.score(output), output[:, 1])


def test_rawgat_st_graph_dropout_and_frequency_masking_as_published():
    torch.manual_seed(0)
    model = build_model(TINY["RawNetGatSpoofST"])
    assert [model.get_submodule(f"GAT_layer_{n}").input_drop.p for n in ("T", "S", "ST")] == [0.2] * 3
    assert [model.get_submodule(f"pool_{n}").drop.p for n in ("T", "S", "ST")] == [0.3] * 3
    x = 0.1 * torch.randn(2, 64600)

    def train_forward(net, seed, freq_aug):
        np.random.seed(seed), __import__("random").seed(seed), torch.manual_seed(seed)
        with torch.no_grad():
            return net.train()(x, freq_aug=freq_aug)[1]

    # freq_aug masks the sinc filters as frequency_mask does, drawing from numpy's and Python's generators first
    masked = copy.deepcopy(model)
    np.random.seed(3), __import__("random").seed(3)
    masked.conv_time.band_pass = frequency_mask(model.conv_time.band_pass)
    assert not torch.equal(masked.conv_time.band_pass, model.conv_time.band_pass)
    with_aug = train_forward(model, 3, True)
    torch.testing.assert_close(with_aug, train_forward(masked, 3, False), rtol=0, atol=0)
    assert not torch.equal(with_aug, train_forward(model, 3, False))
    # dropout is live in training: another torch seed, other outputs; in eval mode none
    assert not torch.equal(train_forward(model, 4, False), train_forward(model, 5, False))
    with torch.no_grad():
        assert torch.equal(model.eval()(x)[1], model.eval()(x)[1])


def test_rawgat_st_refuses_other_lengths_everywhere():
    torch.manual_seed(0)
    model = build_model(TINY["RawNetGatSpoofST"]).eval()
    message = r"RawNetGatSpoofST takes exactly 64600 samples per input .*got 48000"
    with pytest.raises(InputError, match=message):
        model(torch.zeros(1, 48000))
    wave = (0.1 * np.random.default_rng(0).standard_normal(100000)).astype(np.float32)
    result = score(model, wave, segments=True, hop=40000)  # windows of nb_samp: 0, 35400
    assert result.num_windows == 2 and math.isfinite(result.window_mean)
    with pytest.raises(InputError, match=message):
        score(model, wave, segments=True, nb_samp=48000)


# --- end to end ------------------------------------------------------------------------------------------

def shrink(corpus: Path, keep: int) -> None:
    """Keep the first `keep` bona fide and `keep` spoofed utterances of each protocol (RawGAT-ST runs 64,600
    samples a window: a test corpus of a few utterances trains in seconds)."""
    for protocol in (corpus / "ASVspoof2019_LA_cm_protocols").glob("*.txt"):
        lines = protocol.read_text().splitlines()
        kept = [line for line in lines if line.endswith("bonafide")][:keep] + \
            [line for line in lines if line.endswith("spoof")][:keep]
        protocol.write_text("\n".join(kept) + "\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from data_utils.demo import write_demo_corpus
    out = tmp_path_factory.mktemp("demo") / "LA"
    write_demo_corpus(out, seed=0, scale=0.05)
    shrink(out, 3)
    return out


def tiny_run_config(repo_root: Path, corpus: Path, arch: str, path: Path) -> Path:
    """config/demo.json with the tiny `arch` on `corpus`: one epoch of batch 3."""
    config = json.loads((repo_root / "config" / "demo.json").read_text())
    config.update(database_path=str(corpus), model_config=TINY[arch], batch_size=3, num_epochs=1, num_workers=0,
                  eval_batch_size=6, swa_max_dev_eer=100.0)
    path.write_text(json.dumps(config))
    return path


def run_script(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as one_thread, for the scripts
    result = subprocess.run([sys.executable, *args], cwd=repo_root, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow  # 1 to 3 minutes each on a busy two-core CPU
@pytest.mark.parametrize("arch", BASELINES)
def test_train_evaluate_infer_and_export_end_to_end(repo_root, corpus, tmp_path, arch):
    config = tiny_run_config(repo_root, corpus, arch, tmp_path / "tiny.json")
    run_script(repo_root, "scripts/train.py", "--config", str(config), "--output_dir", str(tmp_path / "run"),
               "--device", "cpu")
    best = tmp_path / "run" / "weights" / "best.pth"
    fresh = build_model(TINY[arch], pretrained=False)
    fresh.load_state_dict(torch.load(best, weights_only=True), strict=True)  # the published layout, strictly

    run_script(repo_root, "scripts/evaluate.py", "--config", str(config), "--eval_set", "eval",
               "--model_path", str(best),
               "--output_dir", str(tmp_path / "eval"), "--json", str(tmp_path / "eval.json"), "--device", "cpu")
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert math.isfinite(metrics["eer_percent"]) and math.isfinite(metrics["min_tdcf"])

    flac = sorted((corpus / "ASVspoof2019_LA_eval" / "flac").glob("*.flac"))[:2]
    run_script(repo_root, "scripts/infer.py", *map(str, flac), "--config", str(config), "--model_path", str(best),
               "--segments", "--device", "cpu", "--output", str(tmp_path / "infer.json"))
    nb_samp = TINY[arch]["nb_samp"]  # windows of nb_samp, hop nb_samp // 2
    assert [r["num_windows"] for r in json.loads((tmp_path / "infer.json").read_text())["files"]] == \
        [len(window_starts(sf.info(f).frames, nb_samp, nb_samp // 2)) for f in flac]

    onnx = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
    for fmt, suffix in (("torch-export", "pt2"), ("onnx", "onnx"))[:2 if onnx else 1]:
        out = tmp_path / f"model.{suffix}"
        result = run_script(repo_root, "scripts/export.py", "--config", str(config), "--model_path", str(best),
                            "--format", fmt, "--out", str(out))
        assert f"on 3 inputs of {TINY[arch]['nb_samp']} samples" in result.stdout and out.is_file()


@pytest.mark.parametrize("arch", ["RawNet2Spoof", pytest.param("RawNetGatSpoofST", marks=pytest.mark.slow)])
def test_benchmark_runs_the_published_formulation_and_fp32(repo_root, tmp_path, arch):
    config = json.loads((repo_root / "config" / "demo.json").read_text())
    (tmp_path / "c.json").write_text(json.dumps({**config, "model_config": TINY[arch]}))
    run_script(repo_root, "scripts/benchmark.py", "--config", str(tmp_path / "c.json"), "--device", "cpu",
               "--batch_size", "2", "--modes", "published,fp32", "--warmup", "0", "--repeats", "1",
               "--loader_items", "2", "--json", str(tmp_path / "b.json"))
    rows = json.loads((tmp_path / "b.json").read_text())["modes"]
    assert [r["mode"] for r in rows] == ["published (fp32 eager)", "fp32 eager"]
    assert all(r["train_samples_per_s"] > 0 and r["score_samples_per_s"] > 0 for r in rows)
