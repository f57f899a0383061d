"""SSL-AASIST (wav2vec 2.0 front end + AASIST back end) against the published code's outputs
(../shared/reference/ssl_aasist), its published key layout, and safe loading of XLS-R files."""
import argparse
import copy
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from models import build_model, load_model  # noqa: E402
from models.fast import use_channels_last  # noqa: E402
from models.frontends.ssl_weights import (PRETRAINING_ONLY, fairseq_to_hf, hf_to_fairseq, parse_conv_layers,  # noqa: E402
                                read_pretrained)
from models.frontends.wav2vec2 import XLSR_300M  # noqa: E402
from utils.config import CLASS_WEIGHTS, config_from_dict, load_config  # noqa: E402
from utils.errors import InputError  # noqa: E402

from helpers import one_thread  # noqa: E402,F401 (autouse: one thread in this module)
from helpers import TINY_SSL, export_difference, train_and_evaluate  # noqa: E402

SSL_KEYS = ("conv_feature_layers", "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim",
            "encoder_attention_heads", "conv_pos", "conv_pos_groups", "final_dim", "latent_vars", "latent_groups")
PREFIX = "ssl_model.model."


@pytest.fixture(scope="module")
def ref(reference_dir):
    return reference_dir / "ssl_aasist"


@pytest.fixture(scope="module")
def tiny_model_config(ref) -> dict:
    """The reference model's `model_config`, from its tiny_config.json."""
    tiny = json.loads((ref / "tiny_config.json").read_text())
    backend = tiny["backend"]
    return {"architecture": "SSL_AASIST", "ssl": {k: tiny["wav2vec2"][k] for k in SSL_KEYS},
            "filts": backend["filts"], "gat_dims": backend["gat_dims"], "pool_ratios": backend["pool_ratios"],
            "temperatures": backend["temperatures"]}


@pytest.fixture(scope="module")
def golden(ref):
    return dict(np.load(ref / "golden.npz"))


@pytest.fixture(scope="module")
def published(ref) -> dict:
    return torch.load(ref / "tiny_ssl_aasist.pth", weights_only=True)


@pytest.fixture(scope="module")
def reference_model(tiny_model_config, ref):
    return load_model(tiny_model_config, ref / "tiny_ssl_aasist.pth", device="cpu")


def listing(path) -> list[tuple[str, str, str]]:
    return [tuple(line.split("\t")) for line in path.read_text().splitlines() if not line.startswith("#")]


def layout(state_dict) -> list[tuple[str, str, str]]:
    return [(k, str(v.dtype).removeprefix("torch."), str(list(v.shape))) for k, v in state_dict.items()]


# --- the published outputs ----------------------------------------------------------------------

@pytest.mark.parametrize("i", [0, 1])
def test_reference_logits_and_features(reference_model, golden, i):
    x = torch.from_numpy(golden[f"input_{i}"])
    with torch.no_grad():
        features = reference_model.ssl_model.extract_feat(x)
        last_hidden, logits = reference_model(x)
    np.testing.assert_allclose(features.numpy(), golden[f"ssl_features_{i}"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(last_hidden.numpy(), golden[f"last_hidden_{i}"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(logits.numpy(), golden[f"logits_{i}"], rtol=0, atol=2e-5)  # the reference's bound


def test_plain_and_channels_last_formulations_give_the_same_logits(tiny_model_config, published, golden):
    x = torch.from_numpy(golden["input_0"])
    for model in (build_model(tiny_model_config, fast=False), use_channels_last(build_model(tiny_model_config))):
        model.load_state_dict(published)
        with torch.no_grad():
            _, logits = model.eval()(x)
        np.testing.assert_allclose(logits.numpy(), golden["logits_0"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("fmt", ["torch-export", "onnx"])
def test_export_reproduces_the_reference_model(reference_model, golden, tmp_path, fmt):
    assert export_difference(reference_model, golden["input_0"], fmt, tmp_path / "ssl_aasist") <= 1e-5


# --- the published key layout -------------------------------------------------------------------

def test_published_layout_round_trips(reference_model, published, ref, tmp_path):
    ours = reference_model.state_dict()
    assert layout(ours) == listing(ref / "state_dict_keys.txt")  # names, dtypes, shapes, order
    torch.save(ours, tmp_path / "saved.pth")
    saved = torch.load(tmp_path / "saved.pth", weights_only=True)
    assert list(saved) == list(published)
    for k, v in published.items():
        assert saved[k].dtype == v.dtype and torch.equal(saved[k], v), k
    copied = copy.deepcopy(reference_model).state_dict()  # as a weight average (AveragedModel) copies it
    assert list(copied) == list(published)


def test_full_size_layout_is_the_published_xlsr_300m_one(ref):
    with torch.device("meta"):  # shapes only: no 1.3 GB of memory
        model = build_model({"architecture": "SSL_AASIST", "ssl": "xlsr_300m",
                             "filts": [128, [1, 32], [32, 32], [32, 64], [64, 64]], "gat_dims": [64, 32],
                             "pool_ratios": [0.5] * 4, "temperatures": [2.0, 2.0, 100.0, 100.0]})
    assert layout(model.state_dict()) == listing(ref / "state_dict_keys_xlsr300m.txt")
    assert sum(p.numel() for p in model.parameters()) == 317_837_834


def test_name_mapping_is_one_to_one(published):
    fairseq = {k.removeprefix(PREFIX): v for k, v in published.items() if k.startswith(PREFIX)}
    hf = fairseq_to_hf(fairseq)
    assert "wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original1" in hf
    assert len(hf) == len(fairseq) and list(hf_to_fairseq(hf)) == list(fairseq)
    with pytest.raises(InputError, match="no wav2vec 2.0 layout: encoder.bogus"):
        fairseq_to_hf({"encoder.bogus": torch.zeros(1)})


def test_aasist_weights_are_refused_by_name(tiny_model_config, reference_dir):
    with pytest.raises(InputError, match=r"pos_S \(1, 23, 64\) vs model \(1, 42, 64\); missing \(\d+\): ssl_model"):
        load_model(tiny_model_config, reference_dir / "weights" / "AASIST.pth", device="cpu")


# --- XLS-R files: fairseq checkpoints and Hugging Face folders ---------------------------------

def front_end(published) -> dict:
    return {k.removeprefix(PREFIX): v for k, v in published.items() if k.startswith(PREFIX)}


def fairseq_cfg(ssl: dict) -> dict:
    """The model part of a fairseq cfg as the checkpoint states it (conv layers as a Python expression)."""
    convs = " + ".join(f"[({d}, {k}, {s})]" for d, k, s in ssl["conv_feature_layers"])
    return {**{k: v for k, v in ssl.items() if k != "conv_feature_layers"}, "conv_feature_layers": convs,
            "_name": "wav2vec2", "extractor_mode": "layer_norm", "layer_norm_first": True, "conv_bias": True}


def assert_front_end_is_the_reference(model, published, golden, pretraining: bool = True):
    ours = model.state_dict()
    for k, v in front_end(published).items():
        if pretraining or not k.startswith(PRETRAINING_ONLY):
            assert torch.equal(ours[PREFIX + k], v), k
    with torch.no_grad():
        features = model.ssl_model.extract_feat(torch.from_numpy(golden["input_1"]))
    np.testing.assert_allclose(features.numpy(), golden["ssl_features_1"], rtol=0, atol=2e-5)


@pytest.mark.parametrize("form", ["cfg", "args"])
def test_fairseq_checkpoint_loads_into_the_front_end(tiny_model_config, published, golden, tmp_path, form):
    cfg = fairseq_cfg(tiny_model_config["ssl"])
    # The parts fairseq checkpoints hold besides the weights: a config (a plain dict, or an argparse.Namespace
    # before fairseq's hydra configs) and logged numbers (numpy scalars), whose classes load as stand-ins.
    checkpoint = {"model": front_end(published), "extra_state": {"best_loss": np.float64(2.5)},
                  "cfg": {"model": cfg} if form == "cfg" else None,
                  "args": argparse.Namespace(**cfg) if form == "args" else None}
    torch.save(checkpoint, tmp_path / "xlsr_tiny.pt")
    model = build_model({**tiny_model_config, "ssl_pretrained": str(tmp_path / "xlsr_tiny.pt")})
    assert_front_end_is_the_reference(model, published, golden)


def test_fairseq_checkpoint_of_other_sizes_is_refused_by_key(tiny_model_config, published, tmp_path):
    cfg = {**fairseq_cfg(tiny_model_config["ssl"]), "encoder_attention_heads": 8}  # no shape shows this
    torch.save({"model": front_end(published), "cfg": {"model": cfg}}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="encoder_attention_heads 8, but model_config.ssl.encoder_attention_heads is 4"):
        build_model({**tiny_model_config, "ssl_pretrained": str(tmp_path / "other.pt")})


class _RunsCode:
    """Unpickling this would run `os.system(...)`: what loading must refuse without running it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_fairseq_checkpoint_with_pickled_code_is_refused_unrun(tiny_model_config, published, tmp_path):
    marker = tmp_path / "code_ran"
    torch.save({"model": front_end(published), "cfg": {"model": fairseq_cfg(tiny_model_config["ssl"])},
                "extra_state": {"hook": _RunsCode(marker)}}, tmp_path / "xlsr2_300m.pt")
    with pytest.raises(InputError, match=r"refusing to load .*xlsr2_300m.pt: its pickle names posix.system.*"
                                         r"Hugging Face format"):
        build_model({**tiny_model_config, "ssl_pretrained": str(tmp_path / "xlsr2_300m.pt")})
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["Wav2Vec2Model", "Wav2Vec2ForPreTraining", "old_bin"])
def test_hugging_face_folder_loads(tiny_model_config, reference_model, published, golden, tmp_path, kind):
    hf = reference_model.ssl_model.model  # transformers' Wav2Vec2ForPreTraining holding the reference weights
    folder = tmp_path / kind
    if kind == "old_bin":  # pytorch_model.bin, positional conv in torch's first weight-norm names
        hf.save_pretrained(folder)
        (folder / "model.safetensors").unlink()
        old = {re.sub(r"parametrizations\.weight\.original([01])", lambda m: "weight_" + "gv"[int(m.group(1))], k): v
               for k, v in hf.state_dict().items()}
        torch.save(old, folder / "pytorch_model.bin")
    else:
        (hf.wav2vec2 if kind == "Wav2Vec2Model" else hf).save_pretrained(folder)
    model = build_model({**tiny_model_config, "ssl_pretrained": str(folder)})
    assert_front_end_is_the_reference(model, published, golden, pretraining=kind != "Wav2Vec2Model")


def test_model_id_in_the_hugging_face_cache_loads_without_download(tiny_model_config, reference_model, published,
                                                                   golden, tmp_path, monkeypatch):
    snapshot = tmp_path / "hub" / "models--someone--tiny-xlsr" / "snapshots" / "0123abcd"
    reference_model.ssl_model.model.save_pretrained(snapshot)
    (tmp_path / "hub" / "models--someone--tiny-xlsr" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--tiny-xlsr" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a download attempt would fail, not wait
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model = build_model({**tiny_model_config, "ssl_pretrained": "someone/tiny-xlsr"})
    assert_front_end_is_the_reference(model, published, golden)
    with pytest.raises(InputError, match="someone/not-cached.*Hugging Face cache"):
        build_model({**tiny_model_config, "ssl_pretrained": "someone/not-cached"})


def test_missing_or_mismatching_pretrained_weights_are_named(tiny_model_config, reference_model, tmp_path):
    with pytest.raises(InputError, match="model_config.ssl_pretrained: wav2vec 2.0 weights not found: .*nowhere"):
        build_model({**tiny_model_config, "ssl_pretrained": str(tmp_path / "nowhere")})
    reference_model.ssl_model.model.save_pretrained(tmp_path / "hf")
    wider = {**tiny_model_config, "ssl": {**tiny_model_config["ssl"], "encoder_ffn_embed_dim": 96}}
    with pytest.raises(InputError, match="encoder_ffn_embed_dim 128, but model_config.ssl.encoder_ffn_embed_dim is 96"):
        build_model({**wider, "ssl_pretrained": str(tmp_path / "hf")})


def test_conv_layers_expression_is_read_without_eval():
    assert parse_conv_layers("[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2") == XLSR_300M["conv_feature_layers"]
    with pytest.raises(InputError, match="cannot read conv_feature_layers"):
        parse_conv_layers("__import__('os').system('true')")


def test_a_repeated_conv_layer_list_is_bounded_before_it_is_built():
    """A 1 KB file once made the reader build a list of 300 million layers (212 s, 10 GB) and print it."""
    import time
    for text, problem in [("[(16,10,5)] * 300000000", "more than 64 layers"),
                          ("[(512,10,5)] * 100000000000000000000", "a size of 21 digits"),
                          ("[(1,2,3)] * 2 * 40", "more than 64 layers"), ("[" * 5000, "too long")]:
        start = time.perf_counter()
        with pytest.raises(InputError, match=re.escape(problem)) as e:
            parse_conv_layers(text, "x.pt")
        assert time.perf_counter() - start < 1 and len(str(e.value)) < 200 and str(e.value).startswith("x.pt")


def _fairseq_file(path, model: dict, **extra):
    torch.save({"model": model, **extra}, path)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p, fe: torch.save({"model": fe, "args": argparse.Namespace(encoder_layers=2)}, p, pickle_protocol=4),
     r"opcode 149 \(pickle protocol 4 or later\)"),
    (lambda p, fe: _fairseq_file(p, {**fe, 7: torch.zeros(1)}), r"keys are parameter names, got the key '7' \(int\)"),
    (lambda p, fe: _fairseq_file(p, {**fe, "mask_emb": [1.0, 2.0]}), "mask_emb is a list, not a tensor"),
    (lambda p, fe: _fairseq_file(p, {**fe, "mask_emb": torch.zeros(3).to_sparse()}), "mask_emb is a torch.sparse_coo"),
    (lambda p, fe: _fairseq_file(p, {**fe, "mask_emb": torch.full_like(fe["mask_emb"], math.nan)}),
     "refusing to load wav2vec 2.0 weights .*bad.pt: 1 tensor\\(s\\) hold NaN or infinite values \\(mask_emb\\)"),
    (lambda p, fe: _fairseq_file(p, fe, cfg={"model": {"conv_feature_layers": "[(512,10,5)] * " + "1" + "0" * 20}}),
     "bad.pt: cannot read conv_feature_layers"),
    (lambda p, fe: p.write_text("hello"), "bad.pt: not a PyTorch file"),
], ids=["protocol4", "int_key", "list_value", "sparse", "nan", "conv_overflow", "text"])
def test_a_damaged_or_forged_fairseq_file_is_named(tiny_model_config, published, tmp_path, make, message):
    make(tmp_path / "bad.pt", front_end(published))
    with pytest.raises(InputError, match="model_config.ssl_pretrained: .*" + message):
        build_model({**tiny_model_config, "ssl_pretrained": str(tmp_path / "bad.pt")})


@pytest.mark.parametrize("config, message", [
    ("[1]", "config.json: a Hugging Face model config must hold a JSON object, got array"),
    ("[" * 100000 + "]" * 100000, "config.json: not a usable Hugging Face model config \\(nested too deeply\\)"),
    ({"conv_dim": 5, "conv_kernel": [10], "conv_stride": [5]}, "config.json: conv_dim must be a list"),
    ({"conv_dim": [1, 2], "conv_kernel": [10], "conv_stride": [5]}, "one entry per convolution"),
    ({"hidden_size": "abc"}, "config.json: hidden_size must be a positive integer, got 'abc'"),
], ids=["list", "deep", "conv_dim_number", "conv_lengths", "size_text"])
def test_a_bad_hugging_face_config_is_named(tiny_model_config, reference_model, tmp_path, config, message):
    reference_model.ssl_model.model.save_pretrained(tmp_path / "hf")
    path = tmp_path / "hf" / "config.json"
    if isinstance(config, dict):
        config = json.dumps({**json.loads(path.read_text()), **config})
    path.write_text(config)
    with pytest.raises(InputError, match=message):
        build_model({**tiny_model_config, "ssl_pretrained": str(tmp_path / "hf")})


def test_reading_needs_no_model(ref, tmp_path, published):
    torch.save({"model": front_end(published)}, tmp_path / "bare.pt")
    state_dict, sizes = read_pretrained(tmp_path / "bare.pt")
    assert list(state_dict) == list(front_end(published)) and sizes == {}


# --- training ------------------------------------------------------------------------------------

TINY_MODEL = {"architecture": "SSL_AASIST", "nb_samp": 8000, "ssl": TINY_SSL,
              "filts": [24, [1, 8], [8, 8], [8, 16], [16, 16]], "gat_dims": [16, 8],
              "pool_ratios": [0.5, 0.5, 0.5, 0.5], "temperatures": [2.0, 2.0, 100.0, 100.0]}


def fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(8000) / 16000
    tones = torch.stack([torch.sin(2 * torch.pi * f * t) for f in (220.0, 440.0, 330.0, 660.0)])
    return 0.3 * tones + 0.05 * torch.randn(4, 8000, generator=gen), torch.tensor([0, 1, 0, 1])




def train_steps(model, steps: int) -> list[float]:
    torch.manual_seed(0)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = fixed_batch()
    losses = []
    for _ in range(steps):
        _, logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y, weight=torch.tensor(CLASS_WEIGHTS))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def eval_loss(model) -> float:
    x, y = fixed_batch()
    with torch.no_grad():
        _, logits = model.eval()(x)
    return torch.nn.functional.cross_entropy(logits, y, weight=torch.tensor(CLASS_WEIGHTS)).item()


def test_tiny_ssl_aasist_learns_a_fixed_batch():
    torch.manual_seed(0)
    model = build_model(TINY_MODEL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    start = eval_loss(model)
    losses = train_steps(model, 8)  # in training mode: dropout makes these noisy; the eval loss is not
    assert all(np.isfinite(losses))
    assert eval_loss(model) < 0.8 * start
    after = model.state_dict()
    assert not torch.equal(after[PREFIX + "encoder.layers.0.fc1.weight"], before[PREFIX + "encoder.layers.0.fc1.weight"])
    assert torch.equal(after[PREFIX + "quantizer.vars"], before[PREFIX + "quantizer.vars"])  # pretraining only


def test_frozen_front_end_stays_unchanged():
    torch.manual_seed(0)
    model = build_model({**TINY_MODEL, "freeze_ssl": True})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_steps(model, 2)
    after = model.state_dict()
    front = [k for k in before if k.startswith("ssl_model.")]
    assert front and all(torch.equal(after[k], before[k]) for k in front)
    assert not torch.equal(after["LL.weight"], before["LL.weight"])
    assert all(p.grad is None for p in model.ssl_model.parameters())


def test_gradient_checkpointing_gives_the_same_gradients():
    x, y = fixed_batch()
    grads, layer_calls = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build_model(TINY_MODEL)
        model.drop.p = model.drop_way.p = 0.0  # the one random draw that would differ between the two runs
        if checkpointing:
            model.use_gradient_checkpointing()
        calls = []
        model.ssl_model.model.wav2vec2.encoder.layers[0].attention.register_forward_hook(lambda *_: calls.append(1))
        _, logits = model.train()(x)
        torch.nn.functional.cross_entropy(logits, y, weight=torch.tensor(CLASS_WEIGHTS)).backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
        layer_calls.append(len(calls))
    assert layer_calls == [1, 2]  # checkpointed: the layer runs again in the backward pass
    assert grads[0].keys() == grads[1].keys() and any(k.startswith("ssl_model.") for k in grads[0])
    assert max((grads[0][k] - grads[1][k]).abs().max().item() for k in grads[0]) < 1e-6


def test_gradient_checkpointing_is_refused_for_aasist(tmp_path, repo_root):
    raw = json.loads((repo_root / "config" / "demo.json").read_text())
    (tmp_path / "c.json").write_text(json.dumps({**raw, "gradient_checkpointing": True}))
    with pytest.raises(InputError, match="gradient_checkpointing"):
        load_config(tmp_path / "c.json")


def test_shortest_input(tmp_path):
    model = build_model(TINY_MODEL).eval()
    assert model.min_samples == 1040  # three 20 ms frames of XLS-R's convolutions
    with torch.no_grad():
        _, logits = model(torch.randn(2, 1040))
    assert logits.shape == (2, 2)
    with pytest.raises(ValueError, match="at least 1040 samples"):
        model(torch.randn(2, 1039))


def test_train_and_evaluate_scripts_run_ssl_aasist(repo_root, tmp_path):
    best, summary = train_and_evaluate(repo_root, tmp_path, TINY_MODEL)
    assert list(torch.load(best, weights_only=True))[3] == PREFIX + "mask_emb"  # saved in the published layout
    assert 0 <= summary["eer_percent"] <= 100


# --- configs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, algo", [("SSL_AASIST_LA", 5), ("SSL_AASIST_DF", 3)])
def test_published_recipe_configs(repo_root, name, algo):
    config = load_config(repo_root / "config" / f"{name}.json")
    mc, optim = config.model_config, config.optim_config
    assert mc.architecture == "SSL_AASIST" and mc.ssl.encoder_embed_dim == 1024 and not mc.freeze_ssl
    assert (mc.filts[0], mc.gat_dims, mc.pool_ratios) == (128, [64, 32], [0.5] * 4)
    assert (config.batch_size, config.num_epochs, optim.optimizer, optim.base_lr, optim.weight_decay,
            optim.scheduler) == (14, 100, "adam", 1e-6, 1e-4, "none")
    assert config.augmentation.rawboost_algo == algo


def with_model(**changes) -> dict:
    config = json.loads(json.dumps(BASE_CONFIG))
    config["model_config"].update(changes)
    return config


BASE_CONFIG = {"database_path": "LA", "batch_size": 2, "num_epochs": 1, "model_config": TINY_MODEL,
               "optim_config": {"optimizer": "adam", "base_lr": 1e-6}}


@pytest.mark.parametrize("config, message", [
    (with_model(ssl={**TINY_SSL, "encoder_layers": 0}), "model_config.ssl.encoder_layers must be positive"),
    (with_model(ssl={**TINY_SSL, "encoder_attention_heads": 5}), "model_config.ssl.encoder_attention_heads must be a divisor"),
    (with_model(ssl={**TINY_SSL, "layers": 2}), r"unknown key\(s\) model_config.ssl.layers"),
    (with_model(ssl={k: v for k, v in TINY_SSL.items() if k != "conv_pos"}), "missing key model_config.ssl.conv_pos"),
    (with_model(ssl={**TINY_SSL, "conv_feature_layers": [[16, 10]]}), r"model_config.ssl.conv_feature_layers\[0\]"),
    (with_model(ssl="xlsr_1b"), "model_config.ssl: unknown preset 'xlsr_1b'; valid: xlsr_300m"),
    (with_model(ssl=None), "missing key model_config.ssl"),
    (with_model(first_conv=128), "model_config.first_conv must be left out for SSL_AASIST"),
    (with_model(nb_samp=1039), "model_config.nb_samp must be at least 1040"),
    (with_model(freeze_ssl="maybe"), "model_config.freeze_ssl must be bool"),
    (with_model(architecture="RawNet2"), "model_config.architecture must be one of AASIST, SSL_AASIST"),
    (with_model(architecture="AASIST", first_conv=128), "model_config.ssl must be left out for AASIST"),
    ({**BASE_CONFIG, "freq_aug": True}, "freq_aug must be false for SSL_AASIST"),
])
def test_bad_ssl_config_names_the_key(config, message):
    with pytest.raises(InputError, match=message):
        config_from_dict(config)


def test_preset_and_sizes_are_the_same_config():
    by_name = config_from_dict(with_model(ssl="xlsr_300m", nb_samp=64600))
    by_sizes = config_from_dict(with_model(ssl=XLSR_300M, nb_samp=64600))
    assert by_name == by_sizes


# --- without transformers ------------------------------------------------------------------------

def test_without_transformers_aasist_works_and_ssl_says_what_to_install(repo_root, monkeypatch):
    code = ("import sys; sys.modules['transformers'] = None\n"
            "from utils.errors import InputError\n"
            "import models\n"
            "from utils.config import load_config\n"
            "models.build_model(load_config('config/config.json').model_config)\n"
            "try:\n"
            "    models.build_model(load_config('config/SSL_AASIST_LA.json').model_config)\n"
            "except InputError as e:\n"
            "    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install transformers" in result.stdout


def test_benchmark_measures_gradient_checkpointing(repo_root, tmp_path):
    raw = json.loads((repo_root / "config" / "demo.json").read_text())
    (tmp_path / "ssl.json").write_text(json.dumps({**raw, "model_config": TINY_MODEL}))
    result = subprocess.run([sys.executable, "scripts/benchmark.py", "--config", str(tmp_path / "ssl.json"),
                             "--device", "cpu", "--batch_size", "2", "--modes", "published,fp32,fp32+gc",
                             "--warmup", "0", "--repeats", "1", "--loader_items", "2", "--json", str(tmp_path / "b.json")],
                            cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "b.json").read_text())["modes"]
    assert [r["mode"] for r in rows][-1] == "fp32 eager gradient checkpointing"
    assert rows[-1]["max_abs_logit_diff_vs_fp32"] < 1e-6  # scoring is untouched by checkpointing
