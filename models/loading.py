"""Build a model from its config; load published or own weights safely (`weights_only=True`) on any device."""
from pathlib import Path
from typing import Mapping

import torch

from utils.config import Config, ModelConfig, load_config, model_config_from_dict
from utils.errors import InputError
from utils.io import safe_torch_load
from utils.precision import Speed, maybe_compile, resolve_speed

from .base import Countermeasure
from .fast import prepare_model, speed_up
from .registry import MODELS


def build_model(model_config: ModelConfig | Mapping, fast: bool = True, pretrained: bool = True) -> Countermeasure:
    """The network `model_config.architecture` names (`registry.MODELS`).

    Args:
        model_config: a validated model config or a config's `model_config` mapping (validated here).
        fast: the speed formulations of `fast.py` (same outputs within float32 rounding); False: the plain
            formulation alone, as the published code computes it.
        pretrained: load the pretrained weights the config names (XLS-R for the XLS-R models); False when other
            weights replace them all anyway (`load_model`, a resumed run).
    """
    cfg = model_config if isinstance(model_config, ModelConfig) else model_config_from_dict(model_config)
    model = MODELS[cfg.architecture][1](cfg)
    if pretrained:
        model.load_pretrained(cfg)
    return speed_up(model) if fast else model


def load_state_dict(weights_path: str | Path) -> dict[str, torch.Tensor]:
    """Read a bare state dict or this project's training checkpoint (its `"model"` entry) onto the CPU.

    Loads with `weights_only=True`: a file that carries pickled code is refused and its code never runs.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    obj = safe_torch_load(path)
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    check_state_dict(obj, str(path))
    # Weights saved from a DataParallel / DistributedDataParallel wrapper carry a "module." prefix.
    state_dict = {k.removeprefix("module."): v for k, v in obj.items()}
    check_finite(state_dict, str(path))
    return state_dict


def check_finite(state_dict: Mapping[str, torch.Tensor], source: str = "weights") -> None:
    """Refuse weights with NaN or infinite values (a diverged run's): every score they give is NaN, which
    would otherwise pass for a decision ("NaN > threshold" is False: "spoof").

    Raises:
        InputError: naming ``source``, the number of such tensors and the first few.
    """
    check_state_dict(state_dict, source)
    bad = [k for k, v in state_dict.items()
           if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all())]
    if bad:
        raise InputError(f"refusing to load {source}: {len(bad)} tensor(s) hold NaN or infinite values "
                         f"({', '.join(bad[:8])}{' ...' if len(bad) > 8 else ''}); a diverged training run?")


def load_weights_into(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "weights") -> None:
    """Strict load with an error that names the mismatching keys and shapes, or the NaN or infinite tensors."""
    check_finite(state_dict, source)
    _load_strict(model, state_dict, source)


def _load_strict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """`model.load_state_dict(strict=True)` with an error that names the mismatching keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
                   for k, v in own.items() if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("shape mismatch", wrong_shape), ("missing", missing), ("unexpected", unexpected)):
            if keys:
                parts.append(f"{label} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}")
        raise InputError(f"{source} do not fit this model configuration (wrong config, e.g. AASIST weights "
                         f"into AASIST-L?); " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)


def resolve_device(name: str | None = None) -> torch.device:
    """The device a `--device cpu|cuda` option names, or by default CUDA if available, else the CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda, but CUDA is not available")
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_model(config: str | Path | Config | ModelConfig | Mapping, weights_path: str | Path,
               device: str | torch.device | None = None) -> Countermeasure:
    """Build the config's model (file path, `Config`, model config or `model_config` dict), load weights, and
    return it in eval mode on `device` (default: CUDA if available, else CPU)."""
    if isinstance(config, (str, Path)):
        config = load_config(config)
    model_config = config.model_config if isinstance(config, Config) else config
    model = build_model(model_config, pretrained=False)
    _load_strict(model, load_state_dict(weights_path), str(weights_path))  # load_state_dict checked the values
    return model.to(device or resolve_device()).eval()


def load_scoring_model(config: Config, weights_path: str | Path, device: torch.device, precision: str | None = None,
                       compile: bool | None = None) -> tuple[torch.nn.Module, Speed]:
    """`load_model`, then made ready to score on `device` with the settings `utils.precision.resolve_speed`
    gives for scoring (`precision` and `compile` take precedence over the config's): layout, cuDNN flags,
    compilation. Returns the model and its `Speed` (the forward pass's autocast)."""
    speed = resolve_speed(config, device, "score", precision=precision, compile=compile)
    return maybe_compile(prepare_model(load_model(config, weights_path, device), device, speed), speed), speed


def check_state_dict(obj, source: str = "weights") -> None:
    """Refuse anything but a mapping of text names to dense tensors, naming ``source`` and the first entry at
    fault: a file can hold an integer key, a list where a tensor belongs, or a sparse tensor, which a model's
    ``load_state_dict`` would fail on without saying which file."""
    if not isinstance(obj, Mapping):
        raise InputError(f"{source} holds no state dict (expected a mapping of parameter names to tensors, "
                         f"got {type(obj).__name__})")
    for key, value in obj.items():
        if not isinstance(key, str):
            raise InputError(f"{source}: a state dict's keys are parameter names, got the key {str(key)[:40]!r} "
                             f"({type(key).__name__})")
        if not isinstance(value, torch.Tensor):
            raise InputError(f"{source}: {key[:100]} is a {type(value).__name__}, not a tensor")
        if value.layout != torch.strided:
            raise InputError(f"{source}: {key[:100]} is a {value.layout} tensor; weights are dense (strided) "
                             "tensors")
