"""Speed formulations of four steps of AASIST, each equal to the plain one in `layers.py` and
`aasist.py` within float32 rounding (tests/test_model.py).

`AASIST(model_config, fast=True)` (the default) uses them; `fast=False` runs the plain formulation
alone, as the published code computes it (the benchmark's baseline).

`parts_under` serves one more, off by default and switched on by `AASIST.score_in_parts()`: scoring a big
batch in equal parts whose largest activation stays under 2^31 elements (benchmark mode flag `+parts`).
"""
import torch
import torch.nn.functional as F


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
    tensor cores (a third of a scoring batch of 256: issue 4's profile); scoring in parts avoids the split."""
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
