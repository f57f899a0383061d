"""Build a model from its config; load published or own weights safely (`weights_only=True`) on any device."""
from pathlib import Path
from typing import Mapping, Sequence

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
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path} holds no state dict (expected a mapping of parameter names to tensors)")
    # Weights saved from a DataParallel / DistributedDataParallel wrapper carry a "module." prefix.
    state_dict = {k.removeprefix("module."): v for k, v in obj.items()}
    check_finite(state_dict, str(path))
    return state_dict


def average_weights(weights_paths: Sequence[str | Path]) -> dict[str, torch.Tensor]:
    """The equal-weight average of saved weights of one model (bare state dicts or training checkpoints), as
    Nes2Net's `main.py --num_average_model N` averages N saved epochs for its "CKPT Avg." results: every
    tensor is averaged, BatchNorm running means and variances too (no statistics are recomputed); integer
    tensors (BatchNorm's `num_batches_tracked`) get the average rounded down, as the published code's float
    average becomes when it is loaded into the model's integer buffer.

    Raises:
        InputError: fewer than two files, or files whose names, shapes or dtypes differ (naming the file).
    """
    if len(weights_paths) < 2:
        raise InputError(f"averaging needs at least two weights files, got {len(weights_paths)}")
    first_path, *others = weights_paths
    first = load_state_dict(first_path)
    total = {k: v.double() if v.is_floating_point() else v.clone() for k, v in first.items()}  # sums in float64
    for path in others:
        state_dict = load_state_dict(path)
        missing, unexpected = [k for k in total if k not in state_dict], [k for k in state_dict if k not in total]
        differ = [f"{k} {tuple(v.shape)} {v.dtype} vs {tuple(first[k].shape)} {first[k].dtype}"
                  for k, v in state_dict.items() if k in first and (v.shape, v.dtype) != (first[k].shape, first[k].dtype)]
        if missing or unexpected or differ:
            listed = "; ".join(f"{label} ({len(keys)}): {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
                               for label, keys in (("missing", missing), ("unexpected", unexpected),
                                                   ("different", differ)) if keys)
            raise InputError(f"{path} is not the same model as {first_path}: {listed}")
        for k, v in state_dict.items():
            total[k] += v.double() if v.is_floating_point() else v
    n = len(weights_paths)
    return {k: (v / n).to(first[k].dtype) if v.is_floating_point() else torch.div(v, n, rounding_mode="floor")
            for k, v in total.items()}


def check_finite(state_dict: Mapping[str, torch.Tensor], source: str = "weights") -> None:
    """Refuse weights with NaN or infinite values (a diverged run's): every score they give is NaN, which
    would otherwise pass for a decision ("NaN > threshold" is False: "spoof").

    Raises:
        InputError: naming ``source``, the number of such tensors and the first few.
    """
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
