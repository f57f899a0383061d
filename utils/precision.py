"""Speed settings (precision, memory layout, compilation, CUDA graphs, cuDNN), resolved once per run; a model is
made ready with them by `models.fast.prepare_model`.

One rule for every script: `resolve_speed(config, device, purpose)`. Defaults:

- precision "auto": bf16 autocast for training on CUDA, fp32 otherwise (scoring defaults to fp32, the
  published numbers; a training run scores dev and eval in its own precision);
- channels-last layout: on CUDA in bf16 (in fp32 cuDNN's channels-last kernels score slower), and for
  scoring on a CPU (oneDNN's NHWC convolutions: AASIST scored 1.1x as fast in fp32 on 2 x86-64 cores).
  CPU training stays NCHW although it trained 1.4x as fast: one CI run of the resume test differed from
  the uninterrupted run with it (not reproduced in 20 runs here); NCHW resumes have always matched;
- torch.compile: for training on CUDA; scoring compiles only when asked (it takes about a minute);
- CUDA graphs: with compilation on one CUDA device, not under DDP.
"""
import contextlib
from dataclasses import dataclass

import torch

from utils.config import Config

PURPOSES = ("train", "score")


@dataclass(frozen=True)
class Speed:
    """How a model runs: what `prepare_model` and `maybe_compile` apply, and the forward pass's autocast."""
    precision: str = "fp32"            # "fp32" or "bf16"
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False          # replay compiled graphs as CUDA graphs ("reduce-overhead")
    cudnn_deterministic: bool = True   # the published settings
    cudnn_benchmark: bool = False
    tf32: bool = False                 # PyTorch's default on recent GPUs; fp32 here means fp32
    gradient_checkpointing: bool = False  # where a model supports it: activations recomputed in the backward pass
    score_in_parts: bool = False       # where a model supports it: big scoring batches in parts under 2^31 elements


def resolve_speed(config: Config, device: torch.device, purpose: str, precision: str | None = None,
                  compile: bool | None = None, distributed: bool = False) -> Speed:
    """The settings for `purpose` ("train" or "score") on `device`: the config's, with `precision` and
    `compile` (command-line options) taking precedence, and the defaults of the module docstring."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}, got {purpose!r}")
    cuda = device.type == "cuda"
    precision = precision or config.precision
    if precision == "auto":
        precision = "bf16" if cuda and purpose == "train" else "fp32"
    channels_last = (config.channels_last if config.channels_last is not None
                     else precision == "bf16" if cuda else purpose == "score")
    if compile is None:
        compile = config.compile if config.compile is not None else cuda and purpose == "train"
    cuda_graphs = config.cuda_graphs if config.cuda_graphs is not None else cuda and not distributed
    return Speed(precision, channels_last, compile, compile and cuda_graphs,
                 config.cudnn_deterministic_toggle, config.cudnn_benchmark_toggle,
                 gradient_checkpointing=config.gradient_checkpointing and purpose == "train")


def set_cuda_flags(speed: Speed) -> None:
    """cuDNN algorithm choice, and true fp32 (no TF32) wherever a convolution or matmul runs in fp32.

    PyTorch runs fp32 convolutions in TF32 on recent GPUs by default, keeping 10 of fp32's 23
    mantissa bits; the fp32 path is the one that must give the published numbers.
    """
    torch.backends.cudnn.deterministic = speed.cudnn_deterministic
    torch.backends.cudnn.benchmark = speed.cudnn_benchmark
    torch.backends.cudnn.allow_tf32 = speed.tf32
    torch.backends.cuda.matmul.allow_tf32 = speed.tf32


def maybe_compile(model: torch.nn.Module, speed: Speed) -> torch.nn.Module:
    """`torch.compile(model)` when `speed.compile`, else the module itself.

    Shapes stay static: a training run sees one batch shape (the last short batch is dropped), a
    scoring pass pads its last batch to the full size (`utils.engine.scoring.forward_logits`). CUDA graphs
    replay each compiled graph as one launch: the training step otherwise waits on the CPU launching
    its hundreds of kernels.
    """
    if not speed.compile:
        return model
    return torch.compile(model, dynamic=False, mode="reduce-overhead" if speed.cuda_graphs else None)


def autocast(precision: str, device: torch.device):
    """bf16 autocast for the forward pass (weights, loss and optimiser stay fp32), or nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def is_compiled(model: torch.nn.Module) -> bool:
    """Whether `model` is what `torch.compile` returns (it runs with the shapes it was compiled for)."""
    return isinstance(model, torch._dynamo.eval_frame.OptimizedModule)
