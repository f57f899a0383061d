"""Speed settings (precision, memory layout, compilation, cuDNN), resolved once per run and device."""
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


def set_cuda_flags(deterministic: bool, benchmark: bool) -> None:
    """cuDNN algorithm choice, and true fp32 (no TF32) wherever a convolution or matmul runs in fp32.

    PyTorch runs fp32 convolutions in TF32 on recent GPUs by default, keeping 10 of fp32's 23
    mantissa bits; the fp32 path is the one that must give the published numbers (within 1e-4).
    """
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = benchmark
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def use_channels_last(model, setting: bool | None, device: torch.device, precision: str):
    """`model.use_channels_last()` when asked, or by default on CUDA in bf16 (where it pays; in fp32
    cuDNN's channels-last kernels score slower). Returns the model."""
    if setting if setting is not None else (device.type == "cuda" and precision == "bf16"):
        model.use_channels_last()
    return model


def maybe_compile(model: torch.nn.Module, setting: bool | None, device: torch.device,
                  cuda_graphs: bool | None = None, distributed: bool = False) -> torch.nn.Module:
    """`torch.compile(model)` when asked, or by default on CUDA; the module itself otherwise.

    Shapes stay static: a training run sees one batch shape (the last short batch is dropped), a
    scoring pass pads its last batch to the full size (`utils.scoring.score_batches`).
    `cuda_graphs` replays each compiled graph as one CUDA graph ("reduce-overhead"): the training
    step otherwise waits on the CPU launching its hundreds of kernels. By default it is on with one
    CUDA device, off under DDP (whose gradient all-reduce runs between graphs).
    """
    if not (setting if setting is not None else device.type == "cuda"):
        return model
    if cuda_graphs is None:
        cuda_graphs = device.type == "cuda" and not distributed
    return torch.compile(model, dynamic=False, mode="reduce-overhead" if cuda_graphs else None)


def is_compiled(model: torch.nn.Module) -> bool:
    """Whether `model` is what `torch.compile` returns (it runs with the shapes it was compiled for)."""
    return isinstance(model, torch._dynamo.eval_frame.OptimizedModule)
