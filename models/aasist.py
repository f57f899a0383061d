"""AASIST (Jung et al., "AASIST: Audio anti-spoofing using integrated spectro-temporal graph attention
networks", ICASSP 2022): the blocks of `layers.py` wired as in the published model (clovaai/aasist,
`models/AASIST.py`). AASIST-L is the same architecture with smaller `filts` and `gat_dims`.
"""
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from utils.config import ModelConfig, check, check_each, check_len, is_int
from utils.errors import InputError

from .base import Countermeasure, full_precision
from .layers import GraphAttentionLayer, GraphPool, HtrgGraphAttentionLayer, SincConv, residual_encoder

_STEM_POOL = 3  # max_pool2d (3, 3) after the sinc convolution; each residual block pools time by 3


@dataclass(frozen=True, kw_only=True)
class GraphConfig(ModelConfig):
    """The keys of the encoder and graph half AASIST and SSL-AASIST share; `filts[0]` is the front end's width."""
    filts: list
    gat_dims: list[int]
    pool_ratios: list[float]
    temperatures: list[float]

    FIRST_WIDTH = "num_sinc_filters"  # what filts[0] is, for the message

    def __post_init__(self):
        f = self.filts
        pairs_ok = all(isinstance(p, list) and len(p) == 2 and all(is_int(c) and c > 0 for c in p) for p in f[1:])
        if len(f) != 5 or not is_int(f[0]) or f[0] < 3 or not pairs_ok:
            raise InputError(f"model_config.filts must be [{self.FIRST_WIDTH}, [in, out], [in, out], [in, out], "
                             f"[in, out]], got {f!r}")
        check_len(self.gat_dims, 2, "model_config.gat_dims")
        check_len(self.pool_ratios, 4, "model_config.pool_ratios")
        check_len(self.temperatures, 4, "model_config.temperatures")
        check_each(self.gat_dims, lambda v: v > 0, "model_config.gat_dims", "positive")
        check_each(self.pool_ratios, lambda v: 0 < v <= 1, "model_config.pool_ratios", "in (0, 1]")
        check_each(self.temperatures, lambda v: v > 0, "model_config.temperatures", "positive")


@dataclass(frozen=True, kw_only=True)
class AASISTConfig(GraphConfig):
    """AASIST's `model_config` (the published `AASIST.conf` / `AASIST-L.conf` load unchanged)."""
    first_conv: int                       # sinc filter length

    def __post_init__(self):
        super().__post_init__()
        check(self.first_conv >= 3, "model_config.first_conv", "at least 3", self.first_conv)
        least = min_input_length(self.first_conv)
        check(self.nb_samp >= least, "model_config.nb_samp",
              f"at least {least} (the encoder's shortest input for first_conv {self.first_conv})", self.nb_samp)


def min_input_length(first_conv: int) -> int:
    """Shortest waveform, in samples, that leaves at least one time step after the encoder: the sinc
    convolution (kernel `first_conv` rounded up to odd, no padding), a (3, 3) max-pool, then six residual
    blocks that each pool time by 3."""
    kernel = first_conv + 1 if first_conv % 2 == 0 else first_conv
    return kernel - 1 + _STEM_POOL * 3 ** 6


class GraphBackEnd(Countermeasure):
    """The graph half that AASIST and SSL-AASIST share (AASIST paper: graph attention over the spectral and the
    temporal nodes, two heterogeneous stacking paths with learnt master nodes, max graph operation, readout).

    A subclass builds its front end and encoder, calls `_build_graph`, and hands its node features to
    `_graph_attention`. The parameter names are the published ones of both models.
    """

    def _build_graph(self, enc_dim: int, num_freq_nodes: int, gat_dims: list[int], pool_ratios: list[float],
                     temperatures: list[float]) -> None:
        self.drop = nn.Dropout(0.5)
        self.drop_way = nn.Dropout(0.2)
        self.pos_S = nn.Parameter(torch.randn(1, num_freq_nodes, enc_dim))
        self.master1 = nn.Parameter(torch.randn(1, 1, gat_dims[0]))
        self.master2 = nn.Parameter(torch.randn(1, 1, gat_dims[0]))

        self.GAT_layer_S = GraphAttentionLayer(enc_dim, gat_dims[0], temperature=temperatures[0])
        self.GAT_layer_T = GraphAttentionLayer(enc_dim, gat_dims[0], temperature=temperatures[1])
        self.HtrgGAT_layer_ST11 = HtrgGraphAttentionLayer(gat_dims[0], gat_dims[1], temperature=temperatures[2])
        self.HtrgGAT_layer_ST12 = HtrgGraphAttentionLayer(gat_dims[1], gat_dims[1], temperature=temperatures[2])
        self.HtrgGAT_layer_ST21 = HtrgGraphAttentionLayer(gat_dims[0], gat_dims[1], temperature=temperatures[2])
        self.HtrgGAT_layer_ST22 = HtrgGraphAttentionLayer(gat_dims[1], gat_dims[1], temperature=temperatures[2])

        self.pool_S = GraphPool(pool_ratios[0], gat_dims[0], 0.3)
        self.pool_T = GraphPool(pool_ratios[1], gat_dims[0], 0.3)
        self.pool_hS1 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
        self.pool_hT1 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
        self.pool_hS2 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
        self.pool_hT2 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)

        self.out_layer = nn.Linear(5 * gat_dims[1], 2)

    def _graph_attention(self, e_S: torch.Tensor, e_T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Spectral nodes e_S (B, nS, C), before the position code, and temporal nodes e_T (B, nT, C)
        -> last_hidden (B, 5 * gat_dims[1]), logits (B, 2)."""
        out_S = self.pool_S(self.GAT_layer_S(e_S + self.pos_S))           # (B, nS', gat0)
        out_T = self.pool_T(self.GAT_layer_T(e_T))                        # (B, nT', gat0)

        T1, S1, m1 = self._inference_path(out_T, out_S, self.master1, self.HtrgGAT_layer_ST11,
                                          self.pool_hS1, self.pool_hT1, self.HtrgGAT_layer_ST12)
        T2, S2, m2 = self._inference_path(out_T, out_S, self.master2, self.HtrgGAT_layer_ST21,
                                          self.pool_hS2, self.pool_hT2, self.HtrgGAT_layer_ST22)

        T1, T2, S1, S2, m1, m2 = (self.drop_way(t) for t in (T1, T2, S1, S2, m1, m2))
        out_T, out_S, master = torch.max(T1, T2), torch.max(S1, S2), torch.max(m1, m2)

        last_hidden = torch.cat([
            torch.abs(out_T).max(dim=1).values, out_T.mean(dim=1),
            torch.abs(out_S).max(dim=1).values, out_S.mean(dim=1),
            master.squeeze(1),
        ], dim=1)                                                         # (B, 5 * gat1)
        last_hidden = self.drop(last_hidden)
        return last_hidden, self.out_layer(last_hidden)

    @staticmethod
    def _inference_path(out_T, out_S, master, htrg_first, pool_S, pool_T, htrg_second):
        """One of the two HS-GAL paths: a layer, pooling, then a residual second layer."""
        T, S, m = htrg_first(out_T, out_S, master)                        # temporal nodes are type 1
        S, T = pool_S(S), pool_T(T)
        dT, dS, dm = htrg_second(T, S, m)
        return T + dT, S + dS, m + dm


class AASIST(GraphBackEnd):
    """AASIST countermeasure: raw 16 kHz waveform in, two class logits out (0 spoof, 1 bona fide).

    The published score of an utterance is `logits[:, 1]`: higher means more likely bona fide.
    """

    architecture = "AASIST"
    supports_freq_aug = True
    channels_last_modules = ("first_bn", "encoder")

    def __init__(self, cfg: AASISTConfig | Mapping[str, Any]):
        super().__init__()
        cfg = self.validated(cfg)
        self.nb_samp = cfg.nb_samp
        self.min_samples = min_input_length(cfg.first_conv)
        filts = cfg.filts

        # Construction order follows the published model, so that a seeded initialisation draws
        # the same random numbers in the same order.
        self.conv_time = SincConv(filts[0], cfg.first_conv)
        self.first_bn = nn.BatchNorm2d(1)
        self.selu = nn.SELU(inplace=True)
        self.encoder = residual_encoder(filts)
        self._build_graph(filts[-1][-1], filts[0] // _STEM_POOL, cfg.gat_dims, cfg.pool_ratios, cfg.temperatures)
        self.stem_pool = nn.MaxPool2d((_STEM_POOL, _STEM_POOL))

    def forward(self, x: torch.Tensor, freq_aug: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x: (B, T) float waveform, 16 kHz, T >= `self.min_samples`.
            freq_aug: zero a random band of sinc filters (training-time augmentation).
        Returns:
            last_hidden (B, 5 * gat_dims[1]) and logits (B, 2).
        """
        self.check_input(x)
        x = self.conv_time(x, freq_aug=freq_aug)                          # (B, 70, T - 128)
        x = self.stem_pool(torch.abs(x).unsqueeze(1))                     # (B, 1, 23, (T - 128) // 3)
        x = self.selu(self.first_bn(x))
        e = self.encoder(x)                                               # (B, C, 23, Tn)
        return self.graph_readout(e)

    @full_precision  # about 0.2 % of the work; in bf16 it more than doubled the largest logit error on an H200
    def graph_readout(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output (B, C, F, Tn) -> spectral nodes, one per frequency bin (max over time), and temporal
        nodes, one per step (max over frequency), through the graph half."""
        e = torch.abs(e)
        return self._graph_attention(e.max(dim=3).values.transpose(1, 2),   # (B, 23, C)
                                     e.max(dim=2).values.transpose(1, 2))   # (B, Tn, C)

    def largest_activation(self, num_samples: int) -> int:
        """Elements per utterance of the encoder's largest activation (a block's first convolution output:
        its channels x (frequency rows + 1) x time steps; each block pools time by 3)."""
        rows = self.pos_S.shape[1] + 1                                     # conv1 pads one row
        steps = (num_samples - self.conv_time.band_pass.shape[1] + 1) // _STEM_POOL
        return max(block[0].conv1.out_channels * rows * (steps // 3 ** i) for i, block in enumerate(self.encoder))
