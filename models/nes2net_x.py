"""Nes2Net-X: the XLS-R front end SSL-AASIST uses with a nested Res2Net back end (Liu et al., "Nes2Net: A
Lightweight Nested Architecture for Foundation Model Driven Speech Anti-spoofing", IEEE Transactions on Information
Forensics and Security, 2025; published code: Liu-Tianchi/Nes2Net_ASVspoof_ITW, `model_scripts/wav2vec2_Nes2Net_X.py`,
class `wav2vec2_Nes2Net_no_Res_w_allT` with `Nested_Res2Net_TDNN` inside).

The back end works on the front end's frames as channels over time, (B, E, frames): an outer Res2Net split into
`Nes_ratio[0]` channel groups, each group but the last (added to the previous group's output) through an inner
Res2Net block (`Bottle2neck`, `Nes_ratio[1]` groups) whose branch outputs are stacked on a new axis and mixed by
learnt weights (the "X"), then squeeze-excitation; mean over time (or attentive statistics pooling) and one
linear layer give the two logits. It takes any input length. State-dict names are the published ones
(`ssl_model.model.<fairseq name>`, then `Nested_Res2Net_TDNN.*`), so the authors' checkpoints load unchanged.
"""
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from utils.config import check, check_each, check_len

from .frontends.wav2vec2 import XLSRConfig, XLSRCountermeasure

POOLINGS = ("mean", "ASTP")


@dataclass(frozen=True, kw_only=True)
class Nes2NetXConfig(XLSRConfig):
    """Nes2Net-X's `model_config`: the front end's keys (`XLSRConfig`) and the back end's, in the published
    command-line names and main-branch defaults."""
    Nes_ratio: list[int] = field(default_factory=lambda: [8, 8])  # groups of the outer and the inner Res2Net
    dilation: int = 2                      # of the inner (3, 1) convolutions
    pool_func: str = "mean"                # over time: "mean" or "ASTP" (attentive statistics pooling)
    SE_ratio: list[int] = field(default_factory=lambda: [1])  # squeeze-excitation reduction; [0] used, as published

    def __post_init__(self):
        super().__post_init__()
        check_len(self.Nes_ratio, 2, "model_config.Nes_ratio")
        check_each(self.Nes_ratio, lambda v: v >= 2, "model_config.Nes_ratio", "at least 2")
        width = self.ssl.encoder_embed_dim
        check(width % self.Nes_ratio[0] == 0, "model_config.Nes_ratio[0]",
              f"a divisor of model_config.ssl.encoder_embed_dim ({width})", self.Nes_ratio[0])
        group = width // self.Nes_ratio[0]
        check(group >= self.Nes_ratio[1], "model_config.Nes_ratio[1]",
              f"at most the outer group's width ({group} channels)", self.Nes_ratio[1])
        check(self.dilation >= 1, "model_config.dilation", "at least 1", self.dilation)
        check(self.pool_func in POOLINGS, "model_config.pool_func", f"one of {', '.join(POOLINGS)}", self.pool_func)
        check(len(self.SE_ratio) >= 1, "model_config.SE_ratio", "a list of at least one entry", self.SE_ratio)
        check(1 <= self.SE_ratio[0] <= group, "model_config.SE_ratio[0]", f"in [1, {group}]", self.SE_ratio[0])


class SEModule(nn.Module):
    """Squeeze-excitation over channels: (B, C, T) scaled by sigmoid gates from the mean over time."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool1d(1),
            nn.Conv1d(channels, channels // reduction, kernel_size=1),
            nn.ReLU(),
            nn.Conv1d(channels // reduction, channels, kernel_size=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.se(x)


class Bottle2neck(nn.Module):
    """The inner Res2Net block of Nes2Net-X: (B, C, T) -> (B, C, T).

    The 1x1 convolution's output is split into `scale` groups of `width` channels. The last group starts a stack
    along a new last axis; each step appends the next group, runs a (kernel, 1) convolution over time on the whole
    stack (each stacked slice alike), and its output, summed over the stack with learnt weights (`weighted_sum[i]`,
    initialised to the mean), is that step's branch output. The stack carries the convolved values on, so step i
    sees i + 2 slices.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int, se_reduction: int):
        super().__init__()
        width = channels // scale
        self.width, self.nums = width, scale - 1
        self.conv1 = nn.Conv1d(channels, width * scale, kernel_size=1)
        self.bn1 = nn.BatchNorm1d(width * scale)
        padding = kernel_size // 2 * dilation
        self.weighted_sum = nn.ParameterList(
            [nn.Parameter(torch.full((1, 1, 1, i + 2), 1 / (i + 2))) for i in range(self.nums)])
        self.convs = nn.ModuleList([nn.Conv2d(width, width, kernel_size=(kernel_size, 1), dilation=(dilation, 1),
                                              padding=(padding, 0)) for _ in range(self.nums)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(width) for _ in range(self.nums)])
        self.conv3 = nn.Conv1d(width * scale, channels, kernel_size=1)
        self.bn3 = nn.BatchNorm1d(channels)
        self.relu = nn.ReLU()
        self.se = SEModule(channels, se_reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Published order: ReLU before BatchNorm, here and below.
        out = self.bn1(self.relu(self.conv1(x))).unsqueeze(-1)            # (B, width * scale, T, 1)
        groups = torch.split(out, self.width, dim=1)                      # scale x (B, width, T, 1)
        stack = groups[self.nums]
        branches = []
        for i in range(self.nums):
            stack = torch.cat((stack, groups[i]), dim=-1)                 # (B, width, T, i + 2)
            stack = self.bns[i](self.relu(self.convs[i](stack)))
            branches.append(torch.sum(stack * self.weighted_sum[i], dim=-1))  # (B, width, T)
        out = torch.cat(branches + [groups[self.nums].squeeze(-1)], dim=1)    # (B, width * scale, T)
        out = self.se(self.bn3(self.relu(self.conv3(out))))
        return out + x


class ASTP(nn.Module):
    """Attentive statistics pooling (Desplanques et al., ECAPA-TDNN, Interspeech 2020, without the global
    context): (B, C, T) -> (B, 2C), attention-weighted mean and standard deviation over time."""

    def __init__(self, in_dim: int, bottleneck_dim: int = 128):
        super().__init__()
        self.linear1 = nn.Conv1d(in_dim, bottleneck_dim, kernel_size=1)
        self.linear2 = nn.Conv1d(bottleneck_dim, in_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.softmax(self.linear2(torch.tanh(self.linear1(x))), dim=2)
        mean = torch.sum(alpha * x, dim=2)
        var = torch.sum(alpha * x ** 2, dim=2) - mean ** 2
        return torch.cat([mean, torch.sqrt(var.clamp(min=1e-10))], dim=1)


class NestedRes2NetTDNN(nn.Module):
    """The published `Nested_Res2Net_TDNN` back end: (B, C, T) features -> (pooled (B, C) or (B, 2C), logits (B, 2)).

    The input's channels are split into `nes_ratio[0]` groups of C / nes_ratio[0]; group i (plus, from the second
    on, the previous group's output) goes through `Build_in_Res2Nets[i]`, ReLU and `bns[i]`; the last group is
    passed through unchanged. Then BatchNorm, ReLU, pooling over time and `fc`.
    """

    def __init__(self, in_dim: int, nes_ratio: list[int], dilation: int, pool_func: str, se_reduction: int):
        super().__init__()
        self.group = in_dim // nes_ratio[0]
        self.Build_in_Res2Nets = nn.ModuleList([Bottle2neck(self.group, 3, dilation, nes_ratio[1], se_reduction)
                                                for _ in range(nes_ratio[0] - 1)])
        self.bns = nn.ModuleList([nn.BatchNorm1d(self.group) for _ in range(nes_ratio[0] - 1)])
        self.bn = nn.BatchNorm1d(in_dim)  # published: BatchNorm1d(1024), XLS-R's width
        self.relu = nn.ReLU()
        self.pool_func = pool_func
        if pool_func == "ASTP":
            self.pooling = ASTP(in_dim)
        self.fc = nn.Linear(in_dim * (2 if pool_func == "ASTP" else 1), 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        groups = torch.split(x, self.group, dim=1)                        # nes_ratio[0] x (B, C / n, T)
        outputs, sp = [], None
        for i, (block, bn) in enumerate(zip(self.Build_in_Res2Nets, self.bns)):
            sp = groups[i] if i == 0 else sp + groups[i]
            sp = bn(self.relu(block(sp)))
            outputs.append(sp)
        out = self.relu(self.bn(torch.cat(outputs + [groups[-1]], dim=1)))  # (B, C, T)
        pooled = self.pooling(out) if self.pool_func == "ASTP" else torch.mean(out, dim=-1)
        return pooled, self.fc(pooled)


class Nes2NetX(XLSRCountermeasure):
    """Nes2Net-X countermeasure: raw 16 kHz waveform of any length (at least `min_samples`) in, two class logits
    out (0 spoof, 1 bona fide; trained with weighted cross-entropy, score `logits[:, 1]`)."""

    architecture = "Nes2Net_X"

    def __init__(self, cfg: Nes2NetXConfig | Mapping[str, Any]):
        super().__init__()
        cfg = self.validated(cfg)
        self._build_front_end(cfg)
        self.Nested_Res2Net_TDNN = NestedRes2NetTDNN(cfg.ssl.encoder_embed_dim, cfg.Nes_ratio, cfg.dilation,
                                                     cfg.pool_func, cfg.SE_ratio[0])

    def forward(self, x: torch.Tensor, freq_aug: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x: (B, T) float waveform, 16 kHz, T >= `self.min_samples`.
            freq_aug: must be False (it masks AASIST's sinc filters; there are none here).
        Returns:
            the pooled features (B, E), or (B, 2E) with ASTP, and the logits (B, 2).
        """
        if freq_aug:
            raise ValueError("freq_aug masks AASIST's sinc filters; Nes2Net_X has none")
        self.check_input(x)
        features = self.ssl_model.extract_feat(x)                         # (B, frames, E)
        return self.Nested_Res2Net_TDNN(features.transpose(1, 2))

