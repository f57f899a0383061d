"""The AASIST network: the blocks of `layers.py` wired as in the published model (spec sections 2-6)."""
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from utils.config import DEFAULT_NB_SAMP, min_input_length

from . import fast as fast_ops
from .layers import GraphAttentionLayer, GraphPool, HtrgGraphAttentionLayer, SincConv, residual_encoder

_STEM_POOL = 3  # max_pool2d (3, 3) after the sinc convolution; each residual block pools time by 3


class GraphBackEnd(nn.Module):
    """The graph half that AASIST and SSL-AASIST share (spec sections 4-6): graph attention over the
    spectral and the temporal nodes, two heterogeneous paths with learnt master nodes, and the readout.

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

    Args:
        model_config: the config's `model_config` mapping (`first_conv`, `filts`, `gat_dims`,
            `pool_ratios`, `temperatures`, `nb_samp`; other keys are ignored), or a `ModelConfig`.
        fast: use the speed formulations of `fast.py` (same outputs within float32 rounding);
            False runs the plain formulation alone.

    The published score of an utterance is `logits[:, 1]`: higher means more likely bona fide.
    """

    def __init__(self, model_config: Mapping[str, Any] | Any, fast: bool = True):
        super().__init__()
        cfg = model_config if isinstance(model_config, Mapping) else vars(model_config)
        self.nb_samp = cfg.get("nb_samp", DEFAULT_NB_SAMP)  # the input length it is trained and scored on
        filts = cfg["filts"]
        self.min_samples = min_input_length(cfg["first_conv"])

        # Construction order follows the published model, so that a seeded initialisation draws
        # the same random numbers in the same order.
        self.conv_time = SincConv(filts[0], cfg["first_conv"], fast=fast)
        self.first_bn = nn.BatchNorm2d(1)
        self.selu = nn.SELU(inplace=True)
        self.encoder = residual_encoder(filts, fast=fast)
        self._build_graph(filts[-1][-1], filts[0] // _STEM_POOL, cfg["gat_dims"], cfg["pool_ratios"],
                          cfg["temperatures"])
        self.pool = fast_ops.max_pool if fast else F.max_pool2d
        self.channels_last = False
        self.part_limit = None  # set by score_in_parts

    def score_in_parts(self, limit: int = fast_ops.INDEX_LIMIT) -> "AASIST":
        """Without autograd, run a batch in equal parts whose largest encoder activation stays within `limit`
        elements (`fast.parts_under`). Each utterance's outputs are the same up to rounding."""
        self.part_limit = limit
        return self

    def largest_activation(self, num_samples: int) -> int:
        """Elements per utterance of the encoder's largest activation (a block's first convolution output:
        its channels x (frequency rows + 1) x time steps; each block pools time by 3)."""
        rows = self.pos_S.shape[1] + 1                                     # conv1 pads one row
        steps = (num_samples - self.conv_time.band_pass.shape[1] + 1) // _STEM_POOL
        return max(block[0].conv1.out_channels * rows * (steps // 3 ** i) for i, block in enumerate(self.encoder))

    def use_channels_last(self) -> "AASIST":
        """Run the encoder in channels-last (NHWC) layout, which cuDNN's fast bf16 kernels need.

        Only the layout changes (weights and activations); outputs are the same up to rounding.
        """
        self.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def forward(self, x: torch.Tensor, freq_aug: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x: (B, T) float waveform, 16 kHz, T >= `self.min_samples`.
            freq_aug: zero a random band of sinc filters (training-time augmentation).
        Returns:
            last_hidden (B, 5 * gat_dims[1]) and logits (B, 2).
        """
        check_waveform(x, self.min_samples, "AASIST")
        if self.part_limit is not None and not torch.is_grad_enabled():
            parts = fast_ops.parts_under(x.shape[0], self.largest_activation(x.shape[1]), self.part_limit)
            if parts > 1:
                outputs = [self.forward_all(chunk, freq_aug) for chunk in x.chunk(parts)]
                return torch.cat([h for h, _ in outputs]), torch.cat([logits for _, logits in outputs])
        return self.forward_all(x, freq_aug)

    def forward_all(self, x: torch.Tensor, freq_aug: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The forward pass of a whole batch at once."""
        x = self.conv_time(x, freq_aug=freq_aug)                          # (B, 70, T - 128)
        x = self.pool(torch.abs(x).unsqueeze(1), (3, 3))                  # (B, 1, 23, (T - 128) // 3)
        if self.channels_last:
            x = fast_ops.nhwc_strides(x)
        x = self.selu(self.first_bn(x))
        e = self.encoder(x)                                               # (B, C, 23, Tn)
        # The graph-attention tail runs in fp32 even under bf16 autocast: it is about 0.2 % of the
        # work, and in bf16 it more than doubled AASIST's largest logit error on the reference inputs
        # (0.021 against 0.0090 on an H200).
        with torch.autocast(e.device.type, enabled=False):
            e = torch.abs(e.float())
            # Spectral graph: one node per frequency bin, max over time; temporal: per step, max over frequency.
            return self._graph_attention(e.max(dim=3).values.transpose(1, 2),   # (B, 23, C)
                                         e.max(dim=2).values.transpose(1, 2))   # (B, Tn, C)


def check_waveform(x: torch.Tensor, min_samples: int, name: str) -> None:
    """Refuse anything but a (batch, samples) waveform of at least `min_samples` samples."""
    if x.dim() != 2:
        raise ValueError(f"{name} expects a (batch, samples) waveform, got shape {tuple(x.shape)}")
    if x.shape[1] < min_samples:
        raise ValueError(f"{name} needs at least {min_samples} samples per input "
                         f"({min_samples / 16000:.3f} s at 16 kHz), got {x.shape[1]}")
