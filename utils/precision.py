"""Precision and compilation choices, resolved once per run and device."""
import contextlib

import torch


def resolve_precision(setting: str, device: torch.device) -> str:
    """'auto' -> bf16 on CUDA (where it pays), fp32 elsewhere; 'fp32' and 'bf16' as given."""
    if setting == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return setting


def autocast(precision: str, device: torch.device):
    """bf16 autocast for the forward pass (weights, loss and optimiser stay fp32), or nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def maybe_compile(model: torch.nn.Module, setting: bool | None, device: torch.device) -> torch.nn.Module:
    """`torch.compile(model)` when asked, or by default on CUDA; the module itself otherwise."""
    if setting if setting is not None else device.type == "cuda":
        return torch.compile(model)
    return model
