"""The model house: a new architecture is one class with its config class and one registry entry, and a model
that declares no speed capability still trains, scores, exports and benchmarks."""
import dataclasses
import importlib.util
import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import models
from models import MODELS, build_model, load_model
from models.base import Countermeasure
from models.fast import InParts, prepare_model, use_channels_last
from utils import config as config_module
from utils.config import ModelConfig, check, load_config
from utils.errors import InputError
from utils.precision import Speed

from helpers import tiny_config


@dataclass(frozen=True, kw_only=True)
class ToyConfig(ModelConfig):
    frame: int = 80

    def __post_init__(self):
        check(self.frame > 0, "model_config.frame", "positive", self.frame)


class Toy(Countermeasure):
    """Mean log energy per frame band, then a linear layer: the smallest thing that learns."""

    architecture = "Toy"

    def __init__(self, cfg):
        super().__init__()
        cfg = self.validated(cfg)
        self.nb_samp, self.min_samples, self.frame = cfg.nb_samp, cfg.frame, cfg.frame
        self.bn = nn.BatchNorm1d(8)
        self.out = nn.Linear(8, 2)

    def forward(self, x, freq_aug=False):
        self.check_input(x)
        frames = x[:, : x.shape[1] // self.frame * self.frame].unflatten(1, (-1, self.frame))   # (B, n, frame)
        spectrum = torch.fft.rfft(frames).abs().square()                                          # (B, n, frame/2+1)
        bands = torch.stack([b.mean(-1) for b in spectrum.tensor_split(8, dim=-1)], -1)               # (B, n, 8)
        hidden = self.bn(torch.log(bands + 1e-6).mean(1))                                         # (B, 8)
        return hidden, self.out(hidden)


@pytest.fixture
def toy(monkeypatch):
    """`Toy` registered as models/registry.py registers a model: one entry, seen by config validation too."""
    monkeypatch.setitem(MODELS, "Toy", (ToyConfig, Toy))
    monkeypatch.setitem(config_module._MODELS, "Toy", (ToyConfig, Toy))
    return {"architecture": "Toy", "nb_samp": 4000, "frame": 80}


def test_a_registered_model_is_built_validated_and_named_in_messages(toy):
    model = build_model(toy)
    assert isinstance(model, Toy) and model.nb_samp == 4000
    with pytest.raises(InputError, match="model_config.frame must be positive"):
        build_model({**toy, "frame": 0})
    with pytest.raises(InputError, match=r"model_config.first_conv must be left out for Toy \(a key of AASIST, RawNet2Spoof"):
        build_model({**toy, "first_conv": 128})
    with pytest.raises(InputError, match="architecture must be one of AASIST, SSL_AASIST.*Toy"):
        build_model({**toy, "architecture": "Toy2"})


def test_capabilities_default_to_not_supported(toy):
    model = build_model(toy)
    assert not Toy.supports_freq_aug and not Toy.supports_gradient_checkpointing()
    assert not Toy.supports_scoring_in_parts() and Toy.channels_last_modules == ()
    for ask in (lambda: use_channels_last(model), lambda: InParts(model), model.use_gradient_checkpointing):
        with pytest.raises(InputError, match="Toy does not support it"):
            ask()
    # Where a default asks for channels-last (scoring on a CPU), a model without it keeps its layout.
    assert prepare_model(model, torch.device("cpu"), Speed(channels_last=True)) is model
    assert AASIST_CAPABILITIES == (True, False, True, ("first_bn", "encoder"))


AASIST_CAPABILITIES = (models.AASIST.supports_freq_aug, models.AASIST.supports_gradient_checkpointing(),
                       models.AASIST.supports_scoring_in_parts(), models.AASIST.channels_last_modules)


def test_run_config_refuses_what_the_model_does_not_support(toy, repo_root, tmp_path):
    raw = json.loads((repo_root / "config" / "demo.json").read_text())
    for key, message in (("freq_aug", "freq_aug must be false for Toy"),
                         ("gradient_checkpointing", "gradient_checkpointing must be false for Toy")):
        (tmp_path / "c.json").write_text(json.dumps({**raw, "model_config": toy, key: True}))
        with pytest.raises(InputError, match=message):
            load_config(tmp_path / "c.json")


def _script(repo_root, name):
    spec = importlib.util.spec_from_file_location(f"script_{name}", repo_root / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_model_without_capabilities_trains_scores_exports_and_benchmarks(toy, repo_root, tmp_path):
    from data_utils.demo import write_demo_corpus
    from models.export import LogitsOnly, export_checked
    from utils.experiments.benchmark import measure_model

    corpus = tmp_path / "LA"
    write_demo_corpus(corpus, seed=0, scale=0.1)
    config = tiny_config(repo_root, corpus, tmp_path / "toy.json", model_config=toy, num_epochs=1)
    assert _script(repo_root, "train").main(["--config", str(config), "--output_dir", str(tmp_path / "run"),
                                             "--device", "cpu"]) == 0
    best = tmp_path / "run" / "weights" / "best.pth"
    model = load_model(config, best, device="cpu")
    assert isinstance(model, Toy)
    assert _script(repo_root, "evaluate").main(["--config", str(config), "--model_path", str(best), "--device", "cpu",
                                                "--output_dir", str(tmp_path / "eval"),
                                                "--json", str(tmp_path / "eval.json")]) == 0
    assert 0 <= json.loads((tmp_path / "eval.json").read_text())["eer_percent"] <= 100
    x = torch.randn(3, model.nb_samp).numpy()
    assert export_checked(LogitsOnly(model), x, "torch-export", tmp_path / "toy.pt2", tolerance=1e-4) < 1e-4
    row = measure_model(model, Speed(), torch.device("cpu"), load_config(config).optim_config, 2, 2, 0, 1)
    assert row["train_samples_per_s"] > 0 and row["score_samples_per_s"] > 0


def test_every_registered_model_declares_what_the_interface_needs():
    for name, (config_class, model_class) in MODELS.items():
        assert issubclass(model_class, Countermeasure) and model_class.architecture == name
        assert issubclass(config_class, ModelConfig) and dataclasses.is_dataclass(config_class)
