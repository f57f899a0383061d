"""The network against the published model's outputs (../shared/reference)."""
import os
import re

import numpy as np
import pytest
import torch

from models import AASIST, build_model, load_model, load_state_dict, min_input_length
from models.fast import max_pool, polyphase_conv1d, polyphase_taps
from models.layers import SincConv, mel_sinc_filters
from utils.config import load_config
from utils.errors import InputError

CONFIGS = {"AASIST": "config/config.json", "AASIST-L": "config/AASIST-L.json"}
NUM_PARAMS = {"AASIST": 297_866, "AASIST-L": 85_306}


@pytest.fixture(scope="module")
def golden(reference_dir):
    return dict(np.load(reference_dir / "model_golden.npz"))


def build(name: str, repo_root) -> AASIST:
    torch.manual_seed(0)
    return AASIST(load_config(repo_root / CONFIGS[name]).model_config)


def published(name: str, repo_root, reference_dir) -> AASIST:
    return load_model(repo_root / CONFIGS[name], reference_dir / "weights" / f"{name}.pth", device="cpu")


@pytest.mark.parametrize("name", CONFIGS)
def test_parameter_count(name, repo_root):
    model = build(name, repo_root)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == NUM_PARAMS[name]


@pytest.mark.parametrize("name", CONFIGS)
def test_state_dict_matches_published_listing(name, repo_root, reference_dir):
    listing = []
    for line in (reference_dir / f"state_dict_{name}.txt").read_text().splitlines():
        key, shape, dtype = re.fullmatch(r"(\S+) (\(.*\)) (\S+)", line).groups()
        listing.append((key, shape, dtype))
    ours = [(k, str(tuple(v.shape)), str(v.dtype).removeprefix("torch."))
            for k, v in build(name, repo_root).state_dict().items()]
    assert ours == listing


def test_sinc_filters_bit_exact(golden):
    filters = mel_sinc_filters(70, 128).numpy()
    assert filters.shape == (70, 129)
    np.testing.assert_array_equal(filters, golden["AASIST.sinc_filters"])
    np.testing.assert_array_equal(filters, golden["AASIST-L.sinc_filters"])


@pytest.mark.parametrize("name", CONFIGS)
def test_published_weights_give_published_outputs(name, repo_root, reference_dir, golden):
    model = published(name, repo_root, reference_dir)
    assert not model.training
    with torch.no_grad():
        hidden, logits = model(torch.from_numpy(golden["x"]))
        np.testing.assert_allclose(logits.numpy(), golden[f"{name}.logits"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(hidden.numpy(), golden[f"{name}.last_hidden"], atol=1e-4, rtol=0)
        for other in ("xvar0", "xvar1"):  # 48,000 and 80,000 samples
            _, logits = model(torch.from_numpy(golden[other]))
            np.testing.assert_allclose(logits.numpy(), golden[f"{name}.{other}.logits"], atol=1e-4, rtol=0)


def test_batch_items_are_independent_in_eval(repo_root, reference_dir, golden):
    model = published("AASIST", repo_root, reference_dir)
    with torch.no_grad():
        _, batched = model(torch.from_numpy(golden["x"]))
        _, single = model(torch.from_numpy(golden["x"][1:2]))
    np.testing.assert_allclose(single.numpy(), batched[1:2].numpy(), atol=1e-5)


def test_shortest_input_works_and_shorter_is_a_clear_error(repo_root):
    model = build("AASIST-L", repo_root).eval()
    shortest = min_input_length(128)
    assert shortest == 2315  # 128 taps lost, then pooled by 3 seven times: 128 + 3**7
    with torch.no_grad():
        _, logits = model(torch.randn(2, shortest))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match=f"at least {shortest} samples"):
        model(torch.randn(2, shortest - 1))
    with pytest.raises(ValueError, match="batch, samples"):
        model(torch.randn(shortest))


def test_freq_aug_masks_a_band_in_training_only(repo_root):
    model = build("AASIST-L", repo_root)
    x = torch.randn(1, 4000)
    plain = model.conv_time(x)
    np.random.seed(3)
    import random
    random.seed(3)
    masked = model.conv_time(x, freq_aug=True)
    zero_rows = (masked.abs().sum(dim=-1) == 0).squeeze(0)
    np.random.seed(3)
    random.seed(3)
    width = int(np.random.uniform(0, 20))
    start = random.randint(0, 70 - width)
    expected = torch.zeros(70, dtype=torch.bool)
    expected[start:start + width] = True
    assert torch.equal(zero_rows, expected)
    assert torch.equal(masked[:, ~expected], plain[:, ~expected])
    assert torch.equal(model.conv_time.band_pass, mel_sinc_filters(70, 128))  # the stored filters are untouched


def test_training_step_runs_and_updates_weights(repo_root):
    model = build("AASIST-L", repo_root).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = model.out_layer.weight.detach().clone()
    _, logits = model(torch.randn(3, 6000), freq_aug=True)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 0]), weight=torch.tensor([0.1, 0.9]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, model.out_layer.weight)


# --- loading -----------------------------------------------------------------------------------

def test_weights_saved_here_load_back(repo_root, tmp_path):
    model = build("AASIST-L", repo_root)
    torch.save(model.state_dict(), tmp_path / "bare.pth")
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "checkpoint.pth")
    for name in ("bare.pth", "checkpoint.pth"):
        loaded = load_model(repo_root / CONFIGS["AASIST-L"], tmp_path / name, device="cpu")
        for k, v in model.state_dict().items():
            assert torch.equal(v, loaded.state_dict()[k])


def test_wrong_configuration_names_the_keys(repo_root, reference_dir):
    with pytest.raises(InputError, match=r"shape mismatch.*pos_S \(1, 23, 64\) vs model \(1, 23, 24\)"):
        load_model(repo_root / CONFIGS["AASIST-L"], reference_dir / "weights" / "AASIST.pth", device="cpu")


def test_missing_and_unexpected_keys_are_named(repo_root, tmp_path):
    state = build("AASIST-L", repo_root).state_dict()
    del state["out_layer.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(InputError, match=r"missing \(1\): out_layer.bias.*unexpected \(1\): extra.weight"):
        load_model(repo_root / CONFIGS["AASIST-L"], tmp_path / "w.pth", device="cpu")


class _RunsCode:
    """Unpickling this would run `os.system(...)`: exactly what weights_only=True must refuse."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 cut", b"not a weights file\n"], ids=["empty", "cut", "text"])
def test_an_empty_or_damaged_weights_file_is_a_message_naming_it(tmp_path, content):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(InputError, match=f"^cannot read weights {re.escape(str(path))}: .+"):
        load_state_dict(path)


@pytest.mark.parametrize("legacy", [False, True])
def test_pickled_code_is_refused_and_never_runs(tmp_path, legacy):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"pos_S": torch.zeros(1), "payload": _RunsCode(marker)}, path,
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(InputError, match="refusing to load .*evil.pth"):
        load_state_dict(path)
    assert not marker.exists()


class _PlainClass:
    pass


@pytest.mark.parametrize("payload, name", [(np.ones(3), "numpy"), (_PlainClass(), "_PlainClass")], ids=["numpy", "class"])
def test_weights_holding_other_objects_are_refused_by_name(tmp_path, payload, name):
    """Not only code: any object beyond tensors and plain containers is refused, and the message names it
    (torch's own message starts with advice to turn weights_only off)."""
    path = tmp_path / "other.pth"
    torch.save({"pos_S": torch.zeros(1), "extra": payload}, path)
    with pytest.raises(InputError, match=f"^refusing to load {re.escape(str(path))}: it is not a plain weights file: "
                                         f"its pickle names [\\w.]*{name}"):
        load_state_dict(path)


def test_missing_or_garbage_weights_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_state_dict(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(InputError, match="junk.pth"):
        load_state_dict(tmp_path / "junk.pth")


def test_inference_pooling_equals_max_pool2d():
    x = torch.randn(2, 3, 23, 100)
    for kernel in ((1, 3), (3, 3)):
        expected = torch.nn.functional.max_pool2d(x, kernel)
        with torch.no_grad():
            assert torch.equal(max_pool(x, kernel), expected)
        assert torch.equal(max_pool(x.clone().requires_grad_(), kernel).detach(), expected)


@pytest.mark.parametrize("length", [2315, 2316, 12001, 64600, 80000])
@pytest.mark.parametrize("phases", [1, 8, 16])
def test_polyphase_sinc_convolution_equals_the_direct_one(length, phases):
    filters = mel_sinc_filters(70, 128)
    x = torch.randn(2, length, generator=torch.Generator().manual_seed(length))
    direct = torch.nn.functional.conv1d(x.unsqueeze(1), filters.unsqueeze(1))
    framed = polyphase_conv1d(x, filters, polyphase_taps(filters.shape[1], phases))
    assert framed.shape == direct.shape
    torch.testing.assert_close(framed, direct, atol=1e-6, rtol=0)


@pytest.mark.parametrize("config", ["config/config.json", "config/AASIST-L.json"])
def test_fast_formulation_equals_the_plain_one(config, repo_root):
    """The speed formulations of models/fast.py change no output beyond float32 rounding."""
    model_config = load_config(repo_root / config).model_config
    torch.manual_seed(0)
    fast = build_model(model_config).eval()
    for bn in (m for m in fast.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # statistics a folding can get wrong
        with torch.no_grad():
            bn.running_mean.normal_(0, 0.5), bn.running_var.uniform_(0.5, 2), bn.weight.normal_(1, 0.3)
            bn.bias.normal_(0, 0.3)
    plain = build_model(model_config, fast=False).eval()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(3, 64600, generator=torch.Generator().manual_seed(0))
    bn2_calls = {"fast": 0, "plain": 0}
    for name, model in (("fast", fast), ("plain", plain)):
        for block in model.encoder:
            block[0].bn2.register_forward_hook(lambda *_, name=name: bn2_calls.__setitem__(name, bn2_calls[name] + 1))
    with torch.no_grad():
        (h_fast, fast_logits), (h_plain, plain_logits) = fast(x), plain(x)
    assert type(plain.conv_time) is SincConv and type(plain.stem_pool) is torch.nn.MaxPool2d
    assert bn2_calls == {"fast": 0, "plain": 6}  # the fast model folded every block's bn2 into its conv1
    torch.testing.assert_close(fast_logits, plain_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_fast, h_plain, atol=1e-5, rtol=1e-5)


def test_folded_batch_norm_passes_gradients_to_the_published_parameters():
    """Scoring folds bn2 into conv1 on the fly; in evaluation mode with autograd (e.g. saliency or
    adversarial attacks on a scorer) conv1 and bn2 still get the plain formulation's gradients."""
    from models.fast import speed_up
    from models.layers import ResidualBlock
    torch.manual_seed(0)
    fast, plain = speed_up(ResidualBlock(4, 8)).eval(), ResidualBlock(4, 8).eval()
    with torch.no_grad():
        fast.bn2.running_mean.normal_(), fast.bn2.running_var.uniform_(0.5, 2), fast.bn2.weight.normal_()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(2, 4, 5, 30)
    for block in (fast, plain):
        block(x).square().sum().backward()
    for name in ("conv1.weight", "conv1.bias", "bn2.weight", "bn2.bias"):
        torch.testing.assert_close(fast.get_parameter(name).grad, plain.get_parameter(name).grad)
    assert set(fast.state_dict()) == set(plain.state_dict())
    fast.bn2.train(), plain.bn2.train()  # BatchNorm kept learning in an otherwise evaluated model: batch statistics
    torch.testing.assert_close(fast(x), plain(x))


def test_scoring_in_parts_equals_the_whole_batch(repo_root):
    from models import fast
    from utils.config import load_config
    torch.manual_seed(0)
    model = AASIST(load_config(repo_root / "config" / "demo.json").model_config).eval()
    x = torch.randn(5, 12000)
    with torch.no_grad():
        whole = model(x)
    per_item = model.largest_activation(12000)
    calls = []
    model.conv_time.register_forward_hook(lambda module, inputs, out: calls.append(out.shape[0]))
    in_parts = fast.InParts(model, limit=2 * per_item)           # at most 2 utterances a part
    assert fast.parts_under(5, per_item, 2 * per_item) == 3
    with torch.no_grad():
        parts = in_parts(x)
    assert calls == [2, 2, 1]
    for a, b in zip(whole, parts):
        assert (a - b).abs().max().item() < 1e-5
    calls.clear()
    in_parts(x[:3])                                               # with autograd: one batch, as in training
    assert calls == [3]
