"""Nes2Net-X against the published back end's outputs (../shared/reference/nes2net_x: `Nested_Res2Net_TDNN` of
Liu-Tianchi/Nes2Net_ASVspoof_ITW on given features; the front end is pinned by ../shared/reference/ssl_aasist),
the published key layouts, its config and a training run."""
import copy
import json
import re

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from models import build_model  # noqa: E402
from models.nes2net_x import ASTP, NestedRes2NetTDNN  # noqa: E402
from utils.config import config_from_dict, load_config  # noqa: E402
from utils.errors import InputError  # noqa: E402

from helpers import one_thread  # noqa: E402,F401 (autouse: one thread in this module)
from helpers import (TINY_SSL, checkpointing_gradient_difference, export_difference, reference_listing,  # noqa: E402
                     state_dict_layout, train_and_evaluate)

BACKEND = "Nested_Res2Net_TDNN."


@pytest.fixture(scope="module")
def ref(reference_dir):
    return reference_dir / "nes2net_x"


@pytest.fixture(scope="module")
def made(ref) -> dict:
    return json.loads((ref / "made.json").read_text())


@pytest.fixture(scope="module")
def golden(ref) -> dict:
    return dict(np.load(ref / "golden.npz"))


@pytest.fixture(scope="module")
def published(ref) -> dict:
    return torch.load(ref / "nes2net_x_backend.pth", weights_only=True)


def back_end(made: dict) -> NestedRes2NetTDNN:
    """The back end of the reference's sizes (made.json's `backend_args`, the published constructor's)."""
    args = made["backend_args"]
    assert args["n_output_logits"] == 2
    return NestedRes2NetTDNN(args["input_channel"], args["Nes_ratio"], args["dilation"], args["pool_func"],
                             args["SE_ratio"][0])


def logits_of(model: NestedRes2NetTDNN, features: np.ndarray) -> np.ndarray:
    """Logits of features in the front end's layout (B, T, C), transposed as the published model does."""
    with torch.no_grad():
        _, logits = model(torch.from_numpy(features).transpose(1, 2))
    return logits.numpy()


def batch_norms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def statistics_before_last_batch(model: NestedRes2NetTDNN, state_dict: dict, features: np.ndarray,
                                 batches: int) -> dict:
    """`state_dict` with its BatchNorm running statistics as they were after `batches` batches, where the file's
    were updated by one more, `features` in training mode, with cumulative averages (momentum None, so the file's
    statistic after n batches is r_n = r_{n-1} + (b_n - r_{n-1}) / n). b_n, the batch's own statistics, is what a
    copy with momentum 1 keeps after that forward."""
    probe = copy.deepcopy(model)
    probe.load_state_dict(state_dict)
    for bn in batch_norms(probe):
        bn.momentum = 1.0
    probe.train()
    logits_of(probe, features)
    batch = probe.state_dict()
    earlier = dict(state_dict)
    for name, value in state_dict.items():
        if name.endswith(("running_mean", "running_var")):
            n = int(state_dict[name.rsplit(".", 1)[0] + ".num_batches_tracked"])
            assert n == batches + 1
            earlier[name] = (n * value - batch[name]) / (n - 1)
    return earlier


@pytest.fixture(scope="module")
def eval_state_dict(made, published, golden) -> dict:
    """The weights the reference's eval-mode logits were computed with. The generator re-estimated the BatchNorm
    statistics on `batches` batches (made.json); where the saved file has counted one more batch, its training-mode
    forward (`logits_train_*`, same features) also updated them before it was saved, so that batch is taken back
    out here."""
    batches = int(re.search(r"on (\d+) batches", made["batchnorm"])[1])
    counted = {int(v) for k, v in published.items() if k.endswith("num_batches_tracked")}
    if counted == {batches}:
        return published
    train_key = next(k for k in golden if k.startswith("logits_train_"))
    features = golden["features_" + train_key.removeprefix("logits_train_")]
    return statistics_before_last_batch(back_end(made), published, features, batches)


def feature_names(golden) -> list[str]:
    return [k.removeprefix("features_") for k in golden if k.startswith("features_")]


# --- the published outputs ----------------------------------------------------------------------

def test_back_end_logits_in_eval_mode_are_the_published(made, golden, eval_state_dict):
    model = back_end(made)
    model.load_state_dict(eval_state_dict)  # strict: the published names and shapes
    model.eval()
    names = feature_names(golden)
    assert len(names) >= 2  # batches of two lengths
    for name in names:
        np.testing.assert_allclose(logits_of(model, golden[f"features_{name}"]), golden[f"logits_{name}"],
                                   rtol=0, atol=1e-5, err_msg=name)


def test_back_end_logits_in_training_mode_are_the_published(made, golden, published):
    model = back_end(made)
    model.load_state_dict(published)
    model.train()  # BatchNorm on the batch's statistics; the back end has no dropout
    keys = [k for k in golden if k.startswith("logits_train_")]
    assert keys
    for key in keys:
        features = golden["features_" + key.removeprefix("logits_train_")]
        np.testing.assert_allclose(logits_of(model, features), golden[key], rtol=0, atol=1e-5, err_msg=key)


def test_back_end_layout_is_the_published(made, ref, published):
    model = back_end(made)
    assert state_dict_layout(model.state_dict()) == reference_listing(ref / "keys_backend.txt")
    assert state_dict_layout(published) == reference_listing(ref / "keys_backend.txt")


def test_whole_model_is_the_front_end_then_the_back_end(made, published):
    """Nes2Net_X's forward: the front end's last layer (extract_feat, pinned by the SSL-AASIST reference),
    transposed to (B, C, T), into the back end."""
    args = made["backend_args"]
    config = {"architecture": "Nes2Net_X", "ssl": {**TINY_SSL, "encoder_embed_dim": args["input_channel"],
                                                   "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4},
              **{k: args[k] for k in ("Nes_ratio", "dilation", "pool_func", "SE_ratio")}}
    torch.manual_seed(0)
    model = build_model(config, fast=False).eval()
    model.Nested_Res2Net_TDNN.load_state_dict(published)
    x = 0.1 * torch.randn(2, 6000)
    with torch.no_grad():
        pooled, logits = model(x)
        _, expected = model.Nested_Res2Net_TDNN(model.ssl_model.extract_feat(x).transpose(1, 2))
    assert pooled.shape == (2, args["input_channel"])
    np.testing.assert_array_equal(logits.numpy(), expected.numpy())
    assert [k for k in model.state_dict() if not k.startswith("ssl_model.model.")] == \
        [BACKEND + k for k in published]


def test_full_size_layout_is_the_published_xlsr_300m_one(ref, repo_root):
    with torch.device("meta"):  # shapes only: no 1.3 GB of memory
        model = build_model(load_config(repo_root / "config" / "Nes2Net_X_LA.json").model_config, pretrained=False)
    assert state_dict_layout(model.state_dict()) == reference_listing(ref / "keys_published_full.txt")
    back = sum(p.numel() for n, p in model.named_parameters() if n.startswith(BACKEND))
    assert back == 512_039  # "511k back-end parameters" in the published tables


def test_astp_pooling_is_attentive_statistics():
    """ASTP with a constant attention score is the plain mean and (biased) standard deviation over time."""
    torch.manual_seed(0)
    pool = ASTP(8, bottleneck_dim=4)
    torch.nn.init.zeros_(pool.linear2.weight)
    x = torch.randn(3, 8, 20)
    with torch.no_grad():
        out = pool(x)
    np.testing.assert_allclose(out.numpy(), torch.cat([x.mean(-1), x.std(-1, unbiased=False)], 1).numpy(),
                               rtol=0, atol=1e-5)
    model = NestedRes2NetTDNN(64, [4, 4], 2, "ASTP", 1)
    assert [k for k in model.state_dict() if k.startswith(("pooling.", "fc."))] == [
        "pooling.linear1.weight", "pooling.linear1.bias", "pooling.linear2.weight", "pooling.linear2.bias",
        "fc.weight", "fc.bias"]
    assert model.fc.in_features == 128
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 64, 30))[1].shape == (2, 2)


# --- any input length -----------------------------------------------------------------------------

TINY_MODEL = {"architecture": "Nes2Net_X", "nb_samp": 8000, "ssl": TINY_SSL, "Nes_ratio": [4, 2]}


def test_any_input_length_is_taken():
    model = build_model(TINY_MODEL).eval()
    assert not model.fixed_length and model.min_samples == 400  # one 20 ms frame of XLS-R's convolutions
    with torch.no_grad():
        for length in (400, 8000, 20011):
            assert model(torch.randn(2, length))[1].shape == (2, 2)
    with pytest.raises(ValueError, match="at least 400 samples"):
        model(torch.randn(1, 399))


@pytest.mark.parametrize("fmt", ["torch-export", "onnx"])
def test_export_reproduces_the_model(tmp_path, fmt):
    torch.manual_seed(0)
    model = build_model(TINY_MODEL).eval()
    x = 0.1 * np.random.default_rng(0).standard_normal((2, 8000), dtype=np.float32)
    assert export_difference(model, x, fmt, tmp_path / "nes2net_x") <= 1e-5


def test_gradient_checkpointing_gives_the_same_gradients():
    difference, trained, layer_calls = checkpointing_gradient_difference(TINY_MODEL)
    assert layer_calls == [1, 2]  # checkpointed: the layer runs again in the backward pass
    assert difference < 1e-6 and any(k.startswith("ssl_model.model.wav2vec2.encoder.") for k in trained)


@pytest.mark.slow  # about 12 s; the XLS-R path end to end stays in test_ssl_aasist.py
def test_train_and_evaluate_scripts_run_nes2net_x(repo_root, tmp_path):
    best, summary = train_and_evaluate(repo_root, tmp_path, TINY_MODEL)
    names = list(torch.load(best, weights_only=True))
    assert names[0] == "ssl_model.model.mask_emb" and names[-1] == BACKEND + "fc.bias"  # the published layout
    assert 0 <= summary["eer_percent"] <= 100


# --- configs -------------------------------------------------------------------------------------

def test_published_recipe_config(repo_root):
    config = load_config(repo_root / "config" / "Nes2Net_X_LA.json")
    mc, optim = config.model_config, config.optim_config
    assert (mc.architecture, mc.ssl.encoder_embed_dim, mc.freeze_ssl, mc.nb_samp) == ("Nes2Net_X", 1024, False, 64600)
    assert (mc.Nes_ratio, mc.dilation, mc.pool_func, mc.SE_ratio) == ([8, 8], 2, "mean", [1])
    # The README's command: lr 2.5e-7 (main.py's default is 1e-6), batch 12, 100 epochs, RawBoost algorithm 4.
    assert (config.batch_size, config.num_epochs, optim.optimizer, optim.base_lr, optim.weight_decay,
            optim.scheduler) == (12, 100, "adam", 2.5e-7, 1e-4, "none")
    assert config.augmentation.rawboost_algo == 4


def with_model(**changes) -> dict:
    return {"database_path": "LA", "batch_size": 2, "num_epochs": 1, "model_config": {**TINY_MODEL, **changes},
            "optim_config": {"optimizer": "adam", "base_lr": 1e-6}}


@pytest.mark.parametrize("config, message", [
    (with_model(Nes_ratio=[8]), "model_config.Nes_ratio must have 2 entries"),
    (with_model(Nes_ratio=[1, 8]), r"model_config.Nes_ratio\[0\] must be at least 2"),
    (with_model(Nes_ratio=[5, 2]), r"Nes_ratio\[0\] must be a divisor of model_config.ssl.encoder_embed_dim \(32\)"),
    (with_model(Nes_ratio=[4, 9]), r"Nes_ratio\[1\] must be at most the outer group's width \(8 channels\)"),
    (with_model(pool_func="max"), "model_config.pool_func must be one of mean, ASTP"),
    (with_model(SE_ratio=[16]), r"model_config.SE_ratio\[0\] must be in \[1, 8\]"),
    (with_model(dilation=0), "model_config.dilation must be at least 1"),
    (with_model(nb_samp=399), "model_config.nb_samp must be at least 400"),
    (with_model(filts=[1]), "model_config.filts must be left out for Nes2Net_X"),
])
def test_bad_config_names_the_key(config, message):
    with pytest.raises(InputError, match=message):
        config_from_dict(config)
