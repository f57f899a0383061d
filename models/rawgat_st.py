"""RawGAT-ST (Tak et al., "End-to-end spectro-temporal graph attention networks for speaker verification
anti-spoofing and speech deepfake detection", ASVspoof 2021 workshop): the published baseline of clovaai/aasist,
`models/RawNetGatSpoofST.py`, built of the blocks of `layers.py` that compute exactly what its blocks compute.

Two residual encoders of the sinc filterbank output give spectral nodes (max over time) and temporal nodes (max
over frequency); a graph attention layer and graph pooling on each, a linear projection of each node set to 12
nodes, their product fused by a third graph attention layer and pooling, then one linear readout. The graph sizes
are fixed in the published code: 64-dimensional encoder output, 32 and 16 node dimensions, pooling ratios 0.64,
0.81 and 0.64, and the projections `proj_T` (14 -> 12 nodes) and `proj_S` (23 -> 12) size the model for
exactly `nb_samp` = 64,600 samples.
"""
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from utils.config import ModelConfig, check, is_int
from utils.errors import InputError

from .base import Countermeasure
from .layers import GraphAttentionLayer, GraphPool, SincConv, residual_encoder

_STEM_POOL = 3            # max_pool2d (3, 3) after the sinc convolution; each residual block pools time by 3
_ENCODER_DIM = 64         # the published graph layers take 64-dimensional nodes
_GAT_DIMS = (32, 16)      # spectral and temporal graphs, then the fused one
_POOL_RATIOS = (0.64, 0.81, 0.64)  # pool_T, pool_S, pool_ST
_FUSED_NODES = 12         # proj_T and proj_S project both node sets onto 12 nodes
_FREQ_NODES, _TIME_NODES = 14, 23  # the inputs of proj_T and proj_S: nodes left after pool_T and pool_S


def kept_nodes(num_nodes: int, ratio: float) -> int:
    """Nodes a published RawGAT-ST graph pool keeps of `num_nodes` (at least 2)."""
    return max(int(num_nodes * ratio), 2)


def encoder_steps(nb_samp: int, first_conv: int) -> int:
    """Time steps after the encoder: the sinc convolution (kernel `first_conv` made odd, no padding), a (3, 3)
    max-pool, then six blocks that each pool time by 3."""
    kernel = first_conv + 1 if first_conv % 2 == 0 else first_conv
    steps = (nb_samp - kernel + 1) // _STEM_POOL
    for _ in range(6):
        steps //= 3
    return steps


@dataclass(frozen=True, kw_only=True)
class RawGATSTConfig(ModelConfig):
    """RawGAT-ST's `model_config` (the published `RawGATST_baseline.conf` loads unchanged): `nb_samp`,
    `first_conv` (sinc filter length) and `filts`, [num_sinc_filters, [1, c1], [c1, c2], [c2, 64], [64, 64]]."""
    first_conv: int
    filts: list

    def __post_init__(self):
        f = self.filts
        pairs_ok = all(isinstance(p, list) and len(p) == 2 and all(is_int(c) and c > 0 for c in p) for p in f[1:])
        if len(f) != 5 or not is_int(f[0]) or f[0] < 3 or not pairs_ok:
            raise InputError(f"model_config.filts must be [num_sinc_filters, [in, out], [in, out], [in, out], "
                             f"[in, out]], got {f!r}")
        check(f[1][0] == 1, "model_config.filts[1][0]", "1 (the encoders take one channel)", f[1][0])
        for i in (2, 3, 4):
            check(f[i][0] == f[i - 1][1], f"model_config.filts[{i}][0]",
                  f"filts[{i - 1}][1] = {f[i - 1][1]} (the channels of the block before)", f[i][0])
        check(f[4] == [_ENCODER_DIM, _ENCODER_DIM], "model_config.filts[4]",
              f"[{_ENCODER_DIM}, {_ENCODER_DIM}] (RawNetGatSpoofST's graph layers take {_ENCODER_DIM}-dimensional "
              f"nodes, as published)", f[4])
        check(self.first_conv >= 3, "model_config.first_conv", "at least 3", self.first_conv)
        freq_nodes = f[0] // _STEM_POOL
        check(kept_nodes(freq_nodes, _POOL_RATIOS[0]) == _FREQ_NODES, "model_config.filts[0]",
              f"a number of sinc filters whose {_STEM_POOL}-pooled frequency bins leave {_FREQ_NODES} nodes after "
              f"pool_T (66 to 71, e.g. the published 70: RawNetGatSpoofST's proj_T is sized for them)", f[0])
        steps = encoder_steps(self.nb_samp, self.first_conv)
        check(kept_nodes(steps, _POOL_RATIOS[1]) == _TIME_NODES, "model_config.nb_samp",
              f"a length that leaves {_TIME_NODES} time nodes after pool_S (the published 64600 with first_conv "
              f"128: RawNetGatSpoofST's proj_S is sized for them; this one gives {steps} encoder steps)",
              self.nb_samp)


class RawGATST(Countermeasure):
    """RawGAT-ST: a (B, nb_samp) 16 kHz waveform in, `(last_hidden (B, 7), logits (B, 2))` out; the published
    score is `logits[:, 1]`, the bona fide logit."""

    architecture = "RawNetGatSpoofST"
    fixed_length = True
    supports_freq_aug = True
    channels_last_modules = ("first_bn", "encoder_T", "encoder_S")

    def __init__(self, cfg: RawGATSTConfig | Mapping[str, Any]):
        super().__init__()
        cfg = self.validated(cfg)
        self.nb_samp = self.min_samples = cfg.nb_samp
        filts = cfg.filts
        gat, fused = _GAT_DIMS

        # Construction order follows the published model, so that a seeded initialisation draws
        # the same random numbers in the same order; it is also the state dict's order.
        self.conv_time = SincConv(filts[0], cfg.first_conv)
        self.first_bn = nn.BatchNorm2d(1)
        self.selu = nn.SELU(inplace=True)
        self.encoder_T = residual_encoder(filts)
        self.encoder_S = residual_encoder(filts)

        # The published layers: attention without temperature (1), input dropout 0.2, pooling dropout 0.3.
        self.GAT_layer_T = GraphAttentionLayer(_ENCODER_DIM, gat)
        self.GAT_layer_S = GraphAttentionLayer(_ENCODER_DIM, gat)
        self.GAT_layer_ST = GraphAttentionLayer(gat, fused)
        self.pool_T = GraphPool(_POOL_RATIOS[0], gat, 0.3)
        self.pool_S = GraphPool(_POOL_RATIOS[1], gat, 0.3)
        self.pool_ST = GraphPool(_POOL_RATIOS[2], fused, 0.3)

        self.proj_T = nn.Linear(_FREQ_NODES, _FUSED_NODES)
        self.proj_S = nn.Linear(_TIME_NODES, _FUSED_NODES)
        self.proj_ST = nn.Linear(fused, 1)
        self.out_layer = nn.Linear(kept_nodes(_FUSED_NODES, _POOL_RATIOS[2]), 2)
        self.stem_pool = nn.MaxPool2d((_STEM_POOL, _STEM_POOL))

    def forward(self, x: torch.Tensor, freq_aug: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x: (B, nb_samp) float waveform, 16 kHz.
            freq_aug: zero a random band of sinc filters (training-time augmentation, `layers.frequency_mask`).
        Returns:
            last_hidden (B, 7), the fused nodes projected to one value each, and logits (B, 2).
        """
        self.check_input(x)
        x = self.conv_time(x, freq_aug=freq_aug)                          # (B, 70, T - 128)
        x = self.stem_pool(torch.abs(x).unsqueeze(1))                     # (B, 1, 23, (T - 128) // 3)
        x = self.selu(self.first_bn(x))

        # In the published order (the dropout draws of training depend on it): the spectral graph, whose
        # nodes are the frequency bins (published name "T"), then the temporal graph (published "S").
        e_T = torch.abs(self.encoder_T(x)).max(dim=3).values              # (B, 64, 23): max over time
        pool_T = self.pool_T(self.GAT_layer_T(e_T.transpose(1, 2)))       # (B, 14, 32)
        out_T = self.proj_T(pool_T.transpose(1, 2))                       # (B, 32, 12)

        e_S = torch.abs(self.encoder_S(x)).max(dim=2).values              # (B, 64, 29): max over frequency
        pool_S = self.pool_S(self.GAT_layer_S(e_S.transpose(1, 2)))       # (B, 23, 32)
        out_S = self.proj_S(pool_S.transpose(1, 2))                       # (B, 32, 12)

        gat_ST = self.GAT_layer_ST((out_T * out_S).transpose(1, 2))       # (B, 12, 16)
        last_hidden = self.proj_ST(self.pool_ST(gat_ST)).flatten(1)       # (B, 7)
        return last_hidden, self.out_layer(last_hidden)

    def largest_activation(self, num_samples: int) -> int:
        """Elements per utterance of the largest encoder activation (a block's first convolution output:
        its channels x (frequency rows + 1) x time steps; each block pools time by 3)."""
        rows = self.conv_time.band_pass.shape[0] // _STEM_POOL + 1        # conv1 pads one row
        steps = (num_samples - self.conv_time.band_pass.shape[1] + 1) // _STEM_POOL
        return max(block[0].conv1.out_channels * rows * (steps // 3 ** i) for i, block in enumerate(self.encoder_T))
