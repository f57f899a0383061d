"""Speed formulations, applied to a built model from outside: each equal to the plain one in `layers.py`
within float32 rounding (tests/test_model.py), none changing the state dict.

- `speed_up(model)`: each layer that has a faster equal form becomes it, in place (the sinc convolution on
  8-sample frames, BatchNorm folded into the preceding convolution for scoring, max-pooling by a reshape).
  `models.build_model(..., fast=False)` leaves the plain formulation alone (the benchmark's baseline).
- `use_channels_last(model)`: the submodules a model lists in `channels_last_modules` in NHWC layout.
- `InParts(model)`: scoring a big batch in equal parts whose largest activation stays under 2^31 elements.
"""
import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import InputError
from utils.precision import Speed, set_cuda_flags

from .layers import ResidualBlock, SincConv


def polyphase_taps(kernel_size: int, phases: int = 8) -> torch.Tensor:
    """Tap indices for `polyphase_conv1d`: (phases, phases, Q), entry [r, s, q] = P*q + s - r, or
    `kernel_size` (a zero tap) where that falls outside the filter."""
    num_frames = (kernel_size + phases - 2) // phases + 1
    r, s, q = torch.meshgrid(torch.arange(phases), torch.arange(phases), torch.arange(num_frames), indexing="ij")
    k = phases * q + s - r
    return torch.where((k >= 0) & (k < kernel_size), k, kernel_size)


def polyphase_conv1d(x: torch.Tensor, filters: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """`F.conv1d(x[:, None], filters[:, None])`: (B, T), (C, K) -> (B, C, T - K + 1), computed on frames.

    A convolution with one input channel cannot use a GPU's matrix units. Cutting the signal into
    frames of P samples (P input channels) makes it a P-channel convolution with Q = taps.shape[-1]
    taps and C * P outputs, output channel c * P + r giving filter c at positions P * m + r: the
    same products, plus some with zero taps.
    """
    (batch, length), (num_filters, kernel_size) = x.shape, filters.shape
    phases, num_frames = taps.shape[0], taps.shape[-1]
    out_len = length - kernel_size + 1
    steps = -(-out_len // phases)                                     # output frames M
    weight = F.pad(filters, (0, 1))[:, taps].reshape(num_filters * phases, phases, num_frames)
    frames = F.pad(x, (0, (steps + num_frames - 1) * phases - length)).view(batch, -1, phases).transpose(1, 2)
    y = F.conv1d(frames, weight)                                      # (B, C * P, M)
    return y.view(batch, num_filters, phases, steps).transpose(2, 3).reshape(batch, num_filters, -1)[..., :out_len]


def max_pool(x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """`F.max_pool2d(x, kernel)` (stride = kernel, remainder dropped) over the last two axes.

    Without autograd it takes the maxima of a reshaped view, which gives the same values about 4x
    faster on a CPU. With autograd it stays max_pool2d: at tied maxima (constant stretches of
    activations, e.g. digital silence) max_pool2d sends the gradient to one input, amax would split it.
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return F.max_pool2d(x, kernel)
    kf, kt = kernel
    f, t = x.shape[-2] // kf * kf, x.shape[-1] // kt * kt
    return x[..., :f, :t].unflatten(-1, (-1, kt)).unflatten(-3, (-1, kf)).amax(dim=(-3, -1))


INDEX_LIMIT = 2**31 - 1  # elements of a tensor that 32-bit indexing reaches


def parts_under(batch: int, elements_per_item: int, limit: int = INDEX_LIMIT) -> int:
    """How many equal parts `batch` items split into so that a part's activation of `elements_per_item` per
    item stays within `limit` elements. Above 2^31 elements PyTorch splits a cuDNN convolution into batch
    pieces itself, and on an H200 the one-input-channel convolutions of block 0 then ran on kernels without
    tensor cores (a third of AASIST's scoring time at batch 256, in a profile of `benchmark.py --profile`);
    scoring in parts avoids the split."""
    return -(-batch // max(1, limit // elements_per_item))


def fold_batch_norm(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of one convolution equal to `bn(conv(x))` with `bn`'s running statistics
    (evaluation mode): scoring then skips a pass over the block's largest activation (AASIST scored 1.07x
    as fast on a CPU). Computed at every call from the live parameters, so the state dict keeps the published
    layout and gradients still reach `conv` and `bn`."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return conv.weight * scale[:, None, None, None], (conv.bias - bn.running_mean) * scale + bn.bias


def nhwc_strides(x: torch.Tensor) -> torch.Tensor:
    """A one-channel (B, 1, F, T) tensor with channels-last strides, over the same memory.

    With one channel NCHW and NHWC hold the same bytes, and `x.contiguous(memory_format=
    torch.channels_last)` keeps the NCHW strides; BatchNorm then runs PyTorch's NCHW statistics
    kernel, which parallelises over channels (slow with one).
    """
    return x.squeeze(1).unsqueeze(-1).permute(0, 3, 1, 2)


# --- the fast forms of layers.py's layers ----------------------------------------------------------------

class PolyphaseSincConv(SincConv):
    """`SincConv` computed on 8-sample frames (`polyphase_conv1d`): the same products in a form a GPU's
    matrix units take."""

    def _speed_up(self) -> None:
        self.register_buffer("phase_taps", polyphase_taps(self.band_pass.shape[1]).to(self.band_pass.device),
                             persistent=False)

    def convolve(self, x: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
        return polyphase_conv1d(x, filters, self.phase_taps)


class FoldedResidualBlock(ResidualBlock):
    """`ResidualBlock` whose bn2, in evaluation mode, is folded into conv1 (`fold_batch_norm`). In training, or
    with bn2 alone kept training, it runs bn2 on batch statistics as the plain block does."""

    def _speed_up(self) -> None:
        pass

    def conv1_bn2(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn2.training:
            return super().conv1_bn2(x)
        return F.conv2d(x, *fold_batch_norm(self.conv1, self.bn2), padding=self.conv1.padding)


class ReshapeMaxPool2d(nn.MaxPool2d):
    """`nn.MaxPool2d` with stride = kernel by `max_pool` (a reshape and a maximum without autograd)."""

    def _speed_up(self) -> None:
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool(x, self.kernel_size)


def _plain_pooling(m: nn.MaxPool2d) -> bool:
    """Pooling `max_pool` computes exactly: stride = kernel, no padding, dilation, ceil mode or indices."""
    kernel = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size, m.kernel_size)
    stride = m.stride if isinstance(m.stride, tuple) else (m.stride, m.stride)
    return (len(kernel) == 2 and stride == kernel and m.padding in (0, (0, 0)) and m.dilation in (1, (1, 1))
            and not m.ceil_mode and not m.return_indices)


FAST_FORMS = {SincConv: PolyphaseSincConv, ResidualBlock: FoldedResidualBlock, nn.MaxPool2d: ReshapeMaxPool2d}


def speed_up(model: nn.Module) -> nn.Module:
    """Give each layer of `model` whose exact type has a fast form in `FAST_FORMS` that form, in place: the same
    parameters, buffers of the state dict and outputs (within float32 rounding). Returns `model`."""
    for module in model.modules():
        fast = FAST_FORMS.get(type(module))
        if fast is not None and (fast is not ReshapeMaxPool2d or _plain_pooling(module)):
            module.__class__ = fast
            module._speed_up()
    return model


def prepare_model(model: nn.Module, device: torch.device, speed: Speed) -> nn.Module:
    """Move `model` to `device` with `speed`'s layout, gradient checkpointing and scoring in parts, where the model
    supports them (channels-last is a layout only: a model without it keeps NCHW), and set the cuDNN flags.
    Returns the model (not compiled: under torchrun the training copy is wrapped in DDP first;
    `utils.precision.maybe_compile`)."""
    if device.type == "cuda":
        set_cuda_flags(speed)
    model = model.to(device)
    if speed.channels_last and model.channels_last_modules:
        use_channels_last(model)
    if speed.gradient_checkpointing:
        model.use_gradient_checkpointing()
    return InParts(model) if speed.score_in_parts else model


# --- layout and batching -----------------------------------------------------------------------------

class NHWCInputBatchNorm2d(nn.BatchNorm2d):
    """A one-channel BatchNorm2d that gives its input channels-last strides first (`nhwc_strides`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nhwc_strides(x))


def use_channels_last(model: nn.Module) -> nn.Module:
    """Run the submodules `model.channels_last_modules` names in channels-last (NHWC) layout, which cuDNN's
    fast bf16 kernels need; a one-channel BatchNorm2d among them gets its input in NHWC strides. Only the
    layout changes; outputs are the same up to rounding. Returns `model`."""
    names = getattr(model, "channels_last_modules", ())
    if not names:
        raise InputError(f"channels_last: {getattr(model, 'architecture', type(model).__name__)} does not support it")
    for name in names:
        module = model.get_submodule(name)
        module.to(memory_format=torch.channels_last)
        if type(module) is nn.BatchNorm2d and module.num_features == 1:
            module.__class__ = NHWCInputBatchNorm2d
    return model


class InParts(nn.Module):
    """`model` scoring, without autograd, a batch in equal parts whose largest activation
    (`model.largest_activation`) stays within `limit` elements (`parts_under`); each utterance's outputs are
    the same up to rounding. With autograd (training) the batch runs whole."""

    def __init__(self, model: nn.Module, limit: int = INDEX_LIMIT):
        super().__init__()
        if not model.supports_scoring_in_parts():
            raise InputError(f"scoring in parts: {model.architecture} does not support it")
        self.model, self.limit, self.nb_samp = model, limit, model.nb_samp

    def forward(self, x: torch.Tensor, freq_aug: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.is_grad_enabled():
            return self.model(x, freq_aug)
        parts = parts_under(x.shape[0], self.model.largest_activation(x.shape[1]), self.limit)
        if parts == 1:
            return self.model(x, freq_aug)
        outputs = [self.model(chunk, freq_aug) for chunk in x.chunk(parts)]
        return tuple(torch.cat(parts_of_output) for parts_of_output in zip(*outputs))
