"""XLSR-SLS end to end against the published code's outputs (../shared/reference/sls: `Model` of
QiShanZhang/SLSforASVspoof-2021-DF on a tiny fairseq wav2vec 2.0), its key layouts, its fixed input length, its
config and a training run."""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from models import build_model, load_model  # noqa: E402
from models.frontends.wav2vec2 import XLSR_300M  # noqa: E402
from utils.config import config_from_dict, load_config  # noqa: E402
from utils.errors import InputError  # noqa: E402

from helpers import one_thread  # noqa: E402,F401 (autouse: one thread in this module)
from helpers import (TINY_SSL, checkpointing_gradient_difference, export_difference, reference_listing,  # noqa: E402
                     state_dict_layout, train_and_evaluate)

CONV = "ssl_model.model.feature_extractor.conv_layers."


@pytest.fixture(scope="module")
def ref(reference_dir):
    return reference_dir / "sls"


@pytest.fixture(scope="module")
def tiny_model_config(ref, golden) -> dict:
    """The reference model's `model_config`: the stand-in's sizes from tiny_config.json; its convolutions'
    widths and kernels from the saved layout (XLS-R's strides, as tiny_config.json states); the fixed input
    length, which sizes `fc1`, from the reference inputs."""
    tiny = json.loads((ref / "tiny_config.json").read_text())
    convs = [shape for name, shape, _ in reference_listing(ref / "state_dict_keys.txt")
             if name.startswith(CONV) and name.endswith(".0.weight")]
    strides = [stride for _, _, stride in XLSR_300M["conv_feature_layers"]]
    assert len(convs) == len(strides)
    ssl = {"conv_feature_layers": [[dim, kernel, stride] for (dim, _, kernel), stride in zip(convs, strides)],
           "encoder_layers": tiny["encoder_layers"], "encoder_embed_dim": tiny["embed_dim"],
           "encoder_ffn_embed_dim": tiny["ffn_dim"], "encoder_attention_heads": tiny["heads"],
           "conv_pos": tiny["conv_pos"], "conv_pos_groups": tiny["conv_pos_groups"], "final_dim": tiny["final_dim"],
           "latent_vars": tiny["latent_vars"], "latent_groups": tiny["latent_groups"]}
    lengths = {v.shape[1] for k, v in golden.items() if k.startswith("input_")}
    assert len(lengths) == 1
    return {"architecture": "XLSR_SLS", "ssl": ssl, "nb_samp": lengths.pop()}


@pytest.fixture(scope="module")
def golden(ref) -> dict:
    return dict(np.load(ref / "golden.npz"))


@pytest.fixture(scope="module")
def reference_model(tiny_model_config, ref):
    return load_model(tiny_model_config, ref / "tiny_sls.pth", device="cpu")  # strict, and in eval mode


def inputs(golden) -> list[str]:
    return sorted(k.removeprefix("input_") for k in golden if k.startswith("input_"))


# --- the published outputs ----------------------------------------------------------------------

def test_every_layer_and_the_logits_are_the_published(reference_model, golden):
    assert len(inputs(golden)) >= 2
    for i in inputs(golden):
        x = torch.from_numpy(golden[f"input_{i}"])
        with torch.no_grad():
            layers = reference_model.ssl_model.layer_results(x)
            _, output = reference_model(x)
        expected = golden[f"layer_results_{i}"]                           # (L, B, frames, E)
        assert len(layers) == len(expected)
        for n, layer in enumerate(layers):
            np.testing.assert_allclose(layer.numpy(), expected[n], rtol=0, atol=1e-5, err_msg=f"input {i} layer {n}")
        np.testing.assert_allclose(output.numpy(), golden[f"logits_{i}"], rtol=0, atol=1e-5, err_msg=f"input {i}")
        np.testing.assert_allclose(reference_model.score(output).numpy(), golden[f"logits_{i}"][:, 1],
                                   rtol=0, atol=1e-5)


def test_layer_results_are_transformers_hidden_states_before_the_final_layer_norm(reference_model, golden):
    """fairseq's `layer_results` are transformers' `hidden_states[1:]`: `hidden_states[0]` is the first layer's
    input, and the last layer's output is the one `extract_feat` (fairseq's 'x') normalises."""
    x = torch.from_numpy(golden["input_0"])
    wav2vec2 = reference_model.ssl_model.model.wav2vec2
    with torch.no_grad():
        hidden = wav2vec2(x, output_hidden_states=True).hidden_states
        features = reference_model.ssl_model.extract_feat(x)
    expected = golden["layer_results_0"]
    assert len(hidden) == len(expected) + 1
    assert np.abs(hidden[0].numpy() - expected[0]).max() > 1e-2
    for n in range(len(expected)):
        np.testing.assert_allclose(hidden[n + 1].numpy(), expected[n], rtol=0, atol=1e-5)
    np.testing.assert_allclose(features.numpy(), golden["x_0"], rtol=0, atol=1e-5)
    with torch.no_grad():
        normalised = wav2vec2.encoder.layer_norm(torch.from_numpy(expected[-1]))
    np.testing.assert_allclose(normalised.numpy(), golden["x_0"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("fmt", ["torch-export", "onnx"])
def test_export_reproduces_the_reference_model(reference_model, golden, tmp_path, fmt):
    assert export_difference(reference_model, golden["input_0"], fmt, tmp_path / "sls") <= 1e-5


# --- the published key layout -------------------------------------------------------------------

def test_published_layout_round_trips(reference_model, ref, tmp_path):
    published = torch.load(ref / "tiny_sls.pth", weights_only=True)
    ours = reference_model.state_dict()
    assert state_dict_layout(ours) == reference_listing(ref / "state_dict_keys.txt")
    torch.save(ours, tmp_path / "saved.pth")
    saved = torch.load(tmp_path / "saved.pth", weights_only=True)
    assert list(saved) == list(published)
    for k, v in published.items():
        assert torch.equal(saved[k], v), k


def test_full_size_layout_is_the_published_xlsr_300m_one(ref, repo_root):
    with torch.device("meta"):  # shapes only: no 1.3 GB of memory
        model = build_model(load_config(repo_root / "config" / "XLSR_SLS_DF.json").model_config, pretrained=False)
    assert state_dict_layout(model.state_dict()) == reference_listing(ref / "state_dict_keys_xlsr300m.txt")
    assert model.fc1.in_features == 22_847  # (1024 // 3) * (201 // 3): 64,600 samples


# --- the fixed input length -----------------------------------------------------------------------

TINY_MODEL = {"architecture": "XLSR_SLS", "nb_samp": 8000, "ssl": TINY_SSL}


def test_other_lengths_are_refused_clearly():
    model = build_model(TINY_MODEL).eval()
    assert model.fixed_length and model.fc1.in_features == (32 // 3) * (24 // 3)  # 8,000 samples: 24 frames
    with torch.no_grad():
        assert model(torch.randn(2, 8000))[1].shape == (2, 2)
    for length in (7999, 16000):
        with pytest.raises(InputError, match=f"XLSR_SLS takes exactly 8000 samples per input .* got {length}"):
            model(torch.randn(1, length))


def test_output_is_a_log_softmax():
    torch.manual_seed(0)
    model = build_model(TINY_MODEL).eval()
    with torch.no_grad():
        _, output = model(0.1 * torch.randn(3, 8000))
    np.testing.assert_allclose(output.exp().sum(1).numpy(), np.ones(3), rtol=0, atol=1e-6)


def test_gradient_checkpointing_gives_the_same_gradients():
    difference, trained, layer_calls = checkpointing_gradient_difference(TINY_MODEL)
    assert layer_calls == [1, 2]  # checkpointed: the layer runs again in the backward pass
    assert difference < 1e-6 and any(k.startswith("ssl_model.model.wav2vec2.encoder.") for k in trained)


@pytest.mark.slow  # about 12 s; the XLS-R path end to end stays in test_ssl_aasist.py
def test_train_and_evaluate_scripts_run_sls(repo_root, tmp_path):
    best, summary = train_and_evaluate(repo_root, tmp_path, TINY_MODEL)
    names = list(torch.load(best, weights_only=True))
    assert names[0] == "ssl_model.model.mask_emb" and names[-4:] == ["fc1.weight", "fc1.bias", "fc3.weight", "fc3.bias"]
    assert 0 <= summary["eer_percent"] <= 100


# --- configs -------------------------------------------------------------------------------------

def test_published_recipe_config(repo_root):
    config = load_config(repo_root / "config" / "XLSR_SLS_DF.json")
    mc, optim = config.model_config, config.optim_config
    assert (mc.architecture, mc.ssl.encoder_embed_dim, mc.freeze_ssl, mc.nb_samp) == ("XLSR_SLS", 1024, False, 64600)
    # The README's command (lr 1e-6, batch 5, 50 epochs) and main.py's defaults (weight decay 1e-4, RawBoost 3).
    assert (config.batch_size, config.num_epochs, optim.optimizer, optim.base_lr, optim.weight_decay,
            optim.scheduler) == (5, 50, "adam", 1e-6, 1e-4, "none")
    assert config.augmentation.rawboost_algo == 3


@pytest.mark.parametrize("changes, message", [
    ({"nb_samp": 1039}, "model_config.nb_samp must be at least 1040"),
    ({"ssl": {**TINY_SSL, "encoder_embed_dim": 2, "encoder_attention_heads": 1, "conv_pos_groups": 1}},
     "model_config.ssl.encoder_embed_dim must be at least 3"),
    ({"Nes_ratio": [8, 8]}, "model_config.Nes_ratio must be left out for XLSR_SLS"),
])
def test_bad_config_names_the_key(changes, message):
    with pytest.raises(InputError, match=message):
        config_from_dict({"database_path": "LA", "batch_size": 2, "num_epochs": 1,
                          "model_config": {**TINY_MODEL, **changes},
                          "optim_config": {"optimizer": "adam", "base_lr": 1e-6}})
