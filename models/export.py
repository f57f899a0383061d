"""Export a countermeasure for deployment, as ONNX or as a torch.export program, checked against the PyTorch model.

    from models import load_model
    from models.export import LogitsOnly, check_batch, export_checked
    net = LogitsOnly(load_model("config/AASIST-L.json", "checkpoints/weights/AASIST-L.pth", device="cpu")).eval()
    diff = export_checked(net, check_batch(None, 64600), "onnx", "aasist-l.onnx", tolerance=1e-4)

The exported network takes "waveform", (batch, nb_samp) float32 at 16 kHz, with a dynamic batch and exactly
nb_samp samples, and returns "logits", (batch, 2); the score is logits[:, 1], the bona fide logit.
torch-export needs nothing beyond torch (load with ``torch.export.load(FILE).module()``); onnx needs
``pip install onnx onnxruntime`` (load with ``onnxruntime.InferenceSession(FILE)``).
"""
import inspect
import io
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from utils.errors import InputError
from utils.io import atomic_open

FORMATS = ("onnx", "torch-export")
ONNX_OPSET = 17


class ExportCheckError(Exception):
    """The exported model does not reproduce the PyTorch model."""


class LogitsOnly(torch.nn.Module):
    """A model with one output: ``(B, nb_samp)`` waveform -> ``(B, 2)`` logits."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.model(waveform)[1]


def check_batch(path: Path | None, nb_samp: int) -> np.ndarray:
    """The check inputs: (B, nb_samp) float32 from ``path``'s "x", or a seeded random (3, nb_samp) batch."""
    if path is None:
        return (0.1 * np.random.default_rng(0).standard_normal((3, nb_samp))).astype(np.float32)
    try:
        with np.load(path) as npz:
            x = npz["x"]
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read --check_inputs {path}: {e}") from None
    except KeyError:
        raise InputError(f"--check_inputs {path} has no array 'x'") from None
    if x.ndim != 2 or x.shape[1] != nb_samp:
        raise InputError(f"--check_inputs {path}: 'x' must be (batch, {nb_samp}), got {x.shape}")
    return x.astype(np.float32)


def export_torch(net: torch.nn.Module, example: torch.Tensor) -> tuple[bytes, Callable]:
    """torch.export program with a dynamic batch; returns the .pt2 bytes and a runner of those bytes."""
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    data = buffer.getvalue()
    module = torch.export.load(io.BytesIO(data)).module()  # what a user of the file gets

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return data, run


def export_onnx(net: torch.nn.Module, example: torch.Tensor) -> tuple[bytes, Callable]:
    """ONNX model with a dynamic batch; returns its bytes and an onnxruntime runner of those bytes."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise InputError("ONNX export needs onnx and onnxruntime, which are not installed: "
                         "pip install onnx onnxruntime") from None
    # The TorchScript-based exporter needs no extra package (the dynamo one needs onnxscript).
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The tracer warns that the input-length check and the graph pools' node counts become constants:
        # they are, by design, because the time dimension is fixed at nb_samp.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (example,), buffer, input_names=["waveform"], output_names=["logits"],
                          dynamic_axes={"waveform": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=ONNX_OPSET, **legacy)
    data = buffer.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # fatal only: a failing run is reported by the check, not logged twice
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(["logits"], {"waveform": x})[0]

    return data, run


def max_difference(net: torch.nn.Module, run: Callable, x: np.ndarray) -> float:
    """Largest |exported - PyTorch| logit over ``x`` (B, nb_samp), which the exported model sees as a batch
    of 1 and a batch of B - 1: other sizes than the export's example batch, so the batch is really dynamic.

    Raises:
        ExportCheckError: the exported model fails to run on a batch.
    """
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()  # (B, 2)
    diff = 0.0
    for rows in ([slice(0, 1), slice(1, None)] if x.shape[0] > 1 else [slice(None)]):
        try:
            got = run(x[rows])
        except Exception as e:  # onnxruntime and torch raise their own types; any failure fails the check
            raise ExportCheckError(f"the exported model fails on a batch of {x[rows].shape[0]}: "
                                   f"{str(e).strip().splitlines()[0]}") from None
        diff = float(np.max([diff, np.abs(got - expected[rows]).max()]))  # NaN stays NaN: the check fails
    return diff


def export_checked(net: torch.nn.Module, x: np.ndarray, fmt: str, out: str | os.PathLike,
                   tolerance: float) -> float:
    """Export ``net`` as ``fmt``, run the export on ``x`` (see ``max_difference``) and write it to ``out``,
    whole, only if its logits equal ``net``'s within ``tolerance``.

    Args:
        net: ``(B, nb_samp)`` waveform -> ``(B, 2)`` logits, in eval mode on the CPU, e.g. ``LogitsOnly(model)``.
        x: (B, nb_samp) float32 check inputs, e.g. from ``check_batch``; ``x`` is also the export's example.
        fmt: one of ``FORMATS``.

    Returns:
        the largest |exported - PyTorch| logit difference over ``x``.

    Raises:
        ExportCheckError: the export fails to run or differs by more than ``tolerance``; ``out`` is not written.
        InputError: onnx or onnxruntime is missing (for "onnx"), or ``out`` cannot be written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    exporter = export_onnx if fmt == "onnx" else export_torch
    data, run = exporter(net, torch.from_numpy(x))
    diff = max_difference(net, run, x)
    if not diff <= tolerance:
        raise ExportCheckError(f"the exported model differs from the PyTorch model by {diff:.3g} "
                               f"(tolerance {tolerance:g})")
    with atomic_open(out, "wb") as f:
        f.write(data)
    return diff
