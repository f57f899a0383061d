"""Export AASIST for deployment, as ONNX or as a torch.export program, and check the export.

    python scripts/export.py --config C --model_path W --format onnx|torch-export --out FILE
                             [--check_inputs model_golden.npz] [--tolerance 1e-4]

The exported network is AASIST in eval mode on the CPU: input "waveform", (batch, nb_samp) float32 at
16 kHz, with a dynamic batch and exactly nb_samp samples (crop or repeat-pad as evaluate.py does); output
"logits", (batch, 2). The score is logits[:, 1], the bona fide logit.

After export the exported model runs on fixed inputs, in a batch of one and a batch of the rest (sizes the
export did not see), and its logits must equal the PyTorch model's within --tolerance. The inputs are the
array "x" (B, nb_samp) of --check_inputs (e.g. the reference model_golden.npz) or else a seeded random
(3, nb_samp) batch. The file is written, whole, only when the check passes; otherwise the exit status is 1.

torch-export needs nothing beyond torch; load the file with torch.export.load(FILE).module().
onnx needs `pip install onnx onnxruntime`; load the file with onnxruntime.InferenceSession(FILE).
Bad options, config or weights, or a missing package, exit with status 2 and one `error: ...` line.
"""
import argparse
import inspect
import io
import sys
import warnings
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, no install needed

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models import load_model  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.errors import InputError  # noqa: E402
from utils.io import atomic_open  # noqa: E402

FORMATS = ("onnx", "torch-export")
ONNX_OPSET = 17


class ExportCheckError(Exception):
    """The exported model does not reproduce the PyTorch model."""


class LogitsOnly(torch.nn.Module):
    """AASIST with one output: ``(B, nb_samp)`` waveform -> ``(B, 2)`` logits."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.model(waveform)[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("config/config.json"),
                        help="JSON config of the model (default config/config.json)")
    parser.add_argument("--model_path", type=Path, help="weights; default: the config's model_path")
    parser.add_argument("--format", choices=FORMATS, required=True, help="onnx or torch-export (.pt2)")
    parser.add_argument("--out", type=Path, required=True, help="file to write")
    parser.add_argument("--check_inputs", type=Path,
                        help='.npz whose array "x" (B, nb_samp) float32 is the check batch '
                             "(default: seeded random, (3, nb_samp))")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest allowed |exported - PyTorch| logit difference (default 1e-4)")
    return parser


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
        diff = max(diff, float(np.abs(got - expected[rows]).max()))
    return diff


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.tolerance < 0:
        parser.error("--tolerance must be >= 0")
    try:
        config = load_config(args.config)
        net = LogitsOnly(load_model(config, args.model_path or Path(config.model_path), device="cpu")).eval()
        x = check_batch(args.check_inputs, config.model_config.nb_samp)
        exporter = export_onnx if args.format == "onnx" else export_torch
        data, run = exporter(net, torch.from_numpy(x))
        diff = max_difference(net, run, x)
        print(f"{args.format}: max |exported - PyTorch| logit difference {diff:.3g} on {x.shape[0]} inputs "
              f"of {x.shape[1]} samples, in batches of 1 and {x.shape[0] - 1} (tolerance {args.tolerance:g})")
        if not diff <= args.tolerance:
            raise ExportCheckError(f"the exported model differs from the PyTorch model by {diff:.3g}")
        write_bytes(args.out, data)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ExportCheckError as e:
        print(f"error: {e}; {args.out} not written", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(data) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
