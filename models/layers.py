"""AASIST building blocks: sinc front-end, residual block, graph attention, heterogeneous
graph attention with a master node, and graph pooling.

Parameter names follow the published code (clovaai/aasist) so that checkpoints move both ways
without conversion. Shapes: `(B, C, F, T)` in the encoder, `(B, N, D)` on graphs. These are the plain
formulations, as the published code computes them; `fast.py` holds faster equal forms of some of them.
"""
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def mel_sinc_filters(num_filters: int, kernel_size: int, sample_rate: int = 16000) -> torch.Tensor:
    """Fixed band-pass sinc filters with mel-spaced band edges (the sinc-convolution front end of RawNet2 and
    AASIST; the published `CONV` layer of clovaai/aasist).

    Returns:
        (num_filters, kernel_size) float32; an even `kernel_size` is made odd (+1).
    """
    if kernel_size % 2 == 0:
        kernel_size += 1
    nfft = 512
    f = (sample_rate // 2) * np.linspace(0, 1, nfft // 2 + 1)  # float64
    mel = 2595 * np.log10(1 + f / 700)
    edges_mel = np.linspace(mel.min(), mel.max(), num_filters + 1)
    edges_hz = 700 * (10 ** (edges_mel / 2595) - 1)

    # The precision mix is deliberate: float64 band edges and 2f/sr factors, float32 tap positions,
    # sinc arguments, sinc values and window. This reproduces the published filters bit for bit.
    half = (kernel_size - 1) // 2
    taps = np.arange(-half, half + 1, dtype=np.float32)
    window = np.hamming(kernel_size).astype(np.float32)
    filters = np.empty((num_filters, kernel_size), dtype=np.float32)
    for i in range(num_filters):
        f_lo, f_hi = edges_hz[i], edges_hz[i + 1]
        high = (2 * f_hi / sample_rate) * np.sinc((np.float32(2 * f_hi) * taps) / np.float32(sample_rate))
        low = (2 * f_lo / sample_rate) * np.sinc((np.float32(2 * f_lo) * taps) / np.float32(sample_rate))
        filters[i] = window * (high - low).astype(np.float32)
    return torch.from_numpy(filters)


class SincConv(nn.Module):
    """Convolution of the raw waveform with fixed mel sinc filters (not trainable, not in the state dict)."""

    def __init__(self, out_channels: int, kernel_size: int, sample_rate: int = 16000):
        super().__init__()
        self.register_buffer("band_pass", mel_sinc_filters(out_channels, kernel_size, sample_rate), persistent=False)

    def forward(self, x: torch.Tensor, freq_aug: bool = False) -> torch.Tensor:
        """(B, T) -> (B, num_filters, T - kernel_size + 1)."""
        return self.convolve(x, frequency_mask(self.band_pass) if freq_aug else self.band_pass)

    def convolve(self, x: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x.unsqueeze(1), filters.unsqueeze(1))


@torch.compiler.disable  # its Python random draws would make torch.compile recompile for every draw
def frequency_mask(filters: torch.Tensor) -> torch.Tensor:
    """A copy of `filters` with a random run of A filters zeroed, A ~ U[0, 20) (frequency masking).

    Draws from the global numpy and Python generators, as the published code does, so the run's
    seed fixes them.
    """
    num_filters = filters.shape[0]
    width = int(np.random.uniform(0, 20))
    start = random.randint(0, num_filters - width)
    filters = filters.clone()
    filters[start:start + width] = 0
    return filters


class ResidualBlock(nn.Module):
    """Two (2, 3) convolutions with a residual path, then max-pooling by 3 along time.

    `(B, in_ch, F, T) -> (B, out_ch, F, T // 3)`; with `pool_time=False` (SSL-AASIST's blocks, which
    pool nowhere) `(B, out_ch, F, T)`.
    """

    def __init__(self, in_channels: int, out_channels: int, first: bool = False, pool_time: bool = True):
        super().__init__()
        self.first = first
        if not first:
            # Quirk kept on purpose: the published block owns bn1 (it is in the state dict) but its
            # forward pass discards bn1's output, so the block does not depend on it. We keep the
            # module for checkpoint compatibility and skip the wasted computation.
            self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=(2, 3), padding=(1, 1))
        self.selu = nn.SELU(inplace=True)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=(2, 3), padding=(0, 1))
        if in_channels != out_channels:
            self.conv_downsample = nn.Conv2d(in_channels, out_channels, kernel_size=(1, 3), padding=(0, 1))
        else:
            self.conv_downsample = None
        self.pool = nn.MaxPool2d((1, 3)) if pool_time else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.selu(self.conv1_bn2(x))      # (B, out, F+1, T)
        out = self.conv2(out)                   # (B, out, F, T)
        identity = x if self.conv_downsample is None else self.conv_downsample(x)
        if self.pool is None:
            return out + identity
        return self.pool(out + identity)        # (B, out, F, T // 3)

    def conv1_bn2(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv1(x))


def residual_encoder(filts: list, pool_time: bool = True) -> nn.Sequential:
    """The six residual blocks of both models' encoders: channels filts[1] = [in, out], filts[2], filts[3],
    then filts[4] three times. Each block sits in a one-element Sequential: the published state-dict keys
    are `encoder.<i>.0.*`."""
    block_channels = [filts[1], filts[2], filts[3], filts[4], filts[4], filts[4]]
    return nn.Sequential(*(
        nn.Sequential(ResidualBlock(cin, cout, first=(i == 0), pool_time=pool_time))
        for i, (cin, cout) in enumerate(block_channels)
    ))


def pairwise_products(x: torch.Tensor) -> torch.Tensor:
    """(B, N, D) -> (B, N, N, D) with entry [b, i, j] = x[b, i] * x[b, j]."""
    return x.unsqueeze(2) * x.unsqueeze(1)


def batch_norm_nodes(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm1d over all B*N node vectors of a (B, N, D) graph."""
    return bn(x.reshape(-1, x.shape[-1])).view_as(x)


def _attention_vector(dim: int) -> nn.Parameter:
    weight = nn.Parameter(torch.empty(dim, 1))
    nn.init.xavier_normal_(weight)
    return weight


class GraphAttentionLayer(nn.Module):
    """Graph attention over a fully connected graph of nodes. `(B, N, in_dim) -> (B, N, out_dim)`."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0):
        super().__init__()
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = _attention_vector(out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(p=0.2)
        self.act = nn.SELU(inplace=True)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_drop(x)
        att = torch.tanh(self.att_proj(pairwise_products(x)))       # (B, N, N, out)
        att = torch.matmul(att, self.att_weight) / self.temperature  # (B, N, N, 1)
        att = F.softmax(att, dim=-2).squeeze(-1)                     # (B, N, N), rows sum to 1
        x = self.proj_with_att(torch.matmul(att, x)) + self.proj_without_att(x)
        return self.act(batch_norm_nodes(self.bn, x))


class HtrgGraphAttentionLayer(nn.Module):
    """Heterogeneous graph attention over two node types plus a master node (the AASIST paper's
    heterogeneous stacking graph attention layer, HS-GAL).

    `x1 (B, N1, in_dim), x2 (B, N2, in_dim), master (B or 1, 1, in_dim)
     -> (B, N1, out_dim), (B, N2, out_dim), (B, 1, out_dim)`.
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0):
        super().__init__()
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_projM = nn.Linear(in_dim, out_dim)
        # Quirk kept on purpose: attention between the two types uses one weight, att_weight12,
        # in both directions (type 1 -> 2 and 2 -> 1).
        self.att_weight11 = _attention_vector(out_dim)
        self.att_weight22 = _attention_vector(out_dim)
        self.att_weight12 = _attention_vector(out_dim)
        self.att_weightM = _attention_vector(out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_attM = nn.Linear(in_dim, out_dim)
        self.proj_without_attM = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(p=0.2)
        self.act = nn.SELU(inplace=True)
        self.temperature = temperature

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, master: torch.Tensor):
        n1 = x1.shape[1]
        x = torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1)  # (B, N, in), N = N1 + N2
        x = self.input_drop(x)

        h = torch.tanh(self.att_proj(pairwise_products(x)))              # (B, N, N, out)
        att = torch.cat([
            torch.cat([h[:, :n1, :n1] @ self.att_weight11, h[:, :n1, n1:] @ self.att_weight12], dim=2),
            torch.cat([h[:, n1:, :n1] @ self.att_weight12, h[:, n1:, n1:] @ self.att_weight22], dim=2),
        ], dim=1) / self.temperature                                      # (B, N, N, 1)
        att = F.softmax(att, dim=-2).squeeze(-1)                          # (B, N, N)

        master = self._update_master(x, master)                           # (B, 1, out)

        x = self.proj_with_att(torch.matmul(att, x)) + self.proj_without_att(x)
        x = self.act(batch_norm_nodes(self.bn, x))                        # (B, N, out)
        return x[:, :n1], x[:, n1:], master

    def _update_master(self, x: torch.Tensor, master: torch.Tensor) -> torch.Tensor:
        att = torch.tanh(self.att_projM(x * master))                      # (B, N, out)
        att = F.softmax(torch.matmul(att, self.att_weightM) / self.temperature, dim=1)  # (B, N, 1)
        pooled = torch.matmul(att.transpose(1, 2), x)                     # (B, 1, in)
        return self.proj_with_attM(pooled) + self.proj_without_attM(master)


class GraphPool(nn.Module):
    """Keep the `max(int(N * ratio), 1)` highest-scoring nodes, scaled by their scores.

    `(B, N, D) -> (B, n, D)`.
    """

    def __init__(self, ratio: float, in_dim: int, dropout: float = 0.3):
        super().__init__()
        self.ratio = ratio
        self.proj = nn.Linear(in_dim, 1)
        self.drop = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(self.proj(self.drop(h)))          # (B, N, 1)
        n_keep = max(int(h.shape[1] * self.ratio), 1)
        _, idx = torch.topk(scores, n_keep, dim=1)               # (B, n, 1), descending
        return torch.gather(h * scores, 1, idx.expand(-1, -1, h.shape[-1]))
