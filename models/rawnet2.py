"""RawNet2 for anti-spoofing (Tak et al., "End-to-end anti-spoofing with RawNet2", ICASSP 2021): the published
baseline of clovaai/aasist, `models/RawNet2Spoof.py`.

Fixed mel sinc filters (`layers.SincConv`), six one-dimensional residual blocks, each followed by filter-wise
feature map scaling (a sigmoid attention vector s: x * s + s), a GRU whose last step goes through two fully
connected layers. As published, `forward` returns `(last_hidden, log_softmax(logits))`: its second output is
log-probabilities (the published training applies cross-entropy to them: a second log-softmax, which changes
nothing, as they are normalised already), and the score is `output[:, 1]`, the log-probability of bona fide.
"""
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from utils.config import ModelConfig, check, is_int
from utils.errors import InputError

from .aasist import min_input_length
from .base import Countermeasure
from .layers import SincConv

_STEM_POOL = 3  # max_pool1d by 3 after the sinc convolution; each residual block pools time by 3 too


@dataclass(frozen=True, kw_only=True)
class RawNet2Config(ModelConfig):
    """RawNet2's `model_config` (the published `RawNet2_baseline.conf` loads unchanged).

    `filts` is [num_sinc_filters, [in, out] of blocks 0 and 1, [in, out] of block 2, [in, out]]; blocks 3 to 5
    take block 2's output width. As in the published code, `filts[3]` and `blocks` are read by nothing.
    """
    first_conv: int                       # sinc filter length
    filts: list
    gru_node: int
    nb_fc_node: int
    nb_gru_layer: int
    nb_classes: int = 2
    in_channels: int = 1
    blocks: list[int] = field(default_factory=lambda: [2, 4])

    def __post_init__(self):
        f = self.filts
        pairs_ok = all(isinstance(p, list) and len(p) == 2 and all(is_int(c) and c > 0 for c in p) for p in f[1:])
        if len(f) != 4 or not is_int(f[0]) or f[0] < 1 or not pairs_ok:
            raise InputError(f"model_config.filts must be [num_sinc_filters, [in, out], [in, out], [in, out]], "
                             f"got {f!r}")
        check(f[1] == [f[0], f[0]], "model_config.filts[1]",
              f"[{f[0]}, {f[0]}] (blocks 0 and 1 take the {f[0]} sinc filters' width and keep it)", f[1])
        check(f[2][0] == f[1][1], "model_config.filts[2][0]", f"filts[1][1] = {f[1][1]} (block 1's width)", f[2][0])
        check(self.first_conv >= 3, "model_config.first_conv", "at least 3", self.first_conv)
        check(self.in_channels == 1, "model_config.in_channels", "1 (the sinc convolution takes one channel)",
              self.in_channels)
        check(self.nb_classes == 2, "model_config.nb_classes", "2 (spoof, bona fide)", self.nb_classes)
        for key in ("gru_node", "nb_fc_node", "nb_gru_layer"):
            check(getattr(self, key) > 0, f"model_config.{key}", "positive", getattr(self, key))
        least = min_input_length(self.first_conv)
        check(self.nb_samp >= least, "model_config.nb_samp",
              f"at least {least} (the encoder's shortest input for first_conv {self.first_conv})", self.nb_samp)


class ResidualBlock1d(nn.Module):
    """The published RawNet2 residual block: two kernel-3 convolutions with a residual path, then max-pooling
    by 3. `(B, in, T) -> (B, out, T // 3)`."""

    def __init__(self, in_channels: int, out_channels: int, first: bool = False):
        super().__init__()
        self.first = first
        if not first:
            # As in layers.ResidualBlock: the published block owns bn1 (it is in the state dict) but its forward
            # pass applies conv1 to the block's input, discarding bn1's output; the module stays, unused.
            self.bn1 = nn.BatchNorm1d(in_channels)
        self.lrelu = nn.LeakyReLU(negative_slope=0.3)
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size=3, padding=1)
        if in_channels != out_channels:
            self.conv_downsample = nn.Conv1d(in_channels, out_channels, kernel_size=1)
        else:
            self.conv_downsample = None
        self.mp = nn.MaxPool1d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.lrelu(self.bn2(self.conv1(x))))
        identity = x if self.conv_downsample is None else self.conv_downsample(x)
        return self.mp(out + identity)


class RawNet2(Countermeasure):
    """RawNet2: a (B, T) 16 kHz waveform in, `(last_hidden (B, nb_fc_node), log-probabilities (B, 2))` out; the
    published score is `output[:, 1]`, the log-probability of bona fide. Takes any length from `min_samples`
    (the GRU reads the whole sequence)."""

    architecture = "RawNet2Spoof"

    def __init__(self, cfg: RawNet2Config | Mapping[str, Any]):
        super().__init__()
        cfg = self.validated(cfg)
        self.nb_samp = cfg.nb_samp
        self.min_samples = min_input_length(cfg.first_conv)
        width0, (_, width2) = cfg.filts[1][1], cfg.filts[2]

        # Construction order follows the published model, so that a seeded initialisation draws the same
        # random numbers in the same order; it is also the state dict's order. The published constructor sets
        # filts[2][0] = filts[2][1] in the caller's config before building blocks 3 to 5; here they are built
        # with [width2, width2] directly and the config is left as it came.
        self.Sinc_conv = SincConv(cfg.filts[0], cfg.first_conv)
        self.first_bn = nn.BatchNorm1d(cfg.filts[0])
        self.selu = nn.SELU(inplace=True)
        self.block0 = nn.Sequential(ResidualBlock1d(*cfg.filts[1], first=True))
        self.block1 = nn.Sequential(ResidualBlock1d(*cfg.filts[1]))
        self.block2 = nn.Sequential(ResidualBlock1d(*cfg.filts[2]))
        self.block3 = nn.Sequential(ResidualBlock1d(width2, width2))
        self.block4 = nn.Sequential(ResidualBlock1d(width2, width2))
        self.block5 = nn.Sequential(ResidualBlock1d(width2, width2))
        self.avgpool = nn.AdaptiveAvgPool1d(1)
        for i, width in enumerate([width0] * 2 + [width2] * 4):
            self.add_module(f"fc_attention{i}", nn.Sequential(nn.Linear(width, width)))
        self.bn_before_gru = nn.BatchNorm1d(width2)
        self.gru = nn.GRU(input_size=width2, hidden_size=cfg.gru_node, num_layers=cfg.nb_gru_layer, batch_first=True)
        self.fc1_gru = nn.Linear(cfg.gru_node, cfg.nb_fc_node)
        self.fc2_gru = nn.Linear(cfg.nb_fc_node, cfg.nb_classes)

    def forward(self, x: torch.Tensor, freq_aug: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x: (B, T) float waveform, 16 kHz, T >= `self.min_samples`.
            freq_aug: ignored, as the published model ignores it (the config refuses `freq_aug` for RawNet2).
        Returns:
            last_hidden (B, nb_fc_node), the first fully connected layer's output, and log_softmax(logits) (B, 2).
        """
        self.check_input(x)
        x = F.max_pool1d(torch.abs(self.Sinc_conv(x)), _STEM_POOL)        # (B, filts[0], (T - K + 1) // 3)
        x = self.selu(self.first_bn(x))
        for i in range(6):
            x = getattr(self, f"block{i}")(x)                             # (B, C, T_i)
            scale = torch.sigmoid(getattr(self, f"fc_attention{i}")(self.avgpool(x).flatten(1)))  # (B, C)
            x = x * scale.unsqueeze(-1) + scale.unsqueeze(-1)             # filter-wise feature map scaling
        x = self.selu(self.bn_before_gru(x)).transpose(1, 2)              # (B, T_5, C)
        self.gru.flatten_parameters()
        x, _ = self.gru(x)
        last_hidden = self.fc1_gru(x[:, -1])                              # (B, nb_fc_node)
        return last_hidden, F.log_softmax(self.fc2_gru(last_hidden), dim=1)
