"""SSL-AASIST: a wav2vec 2.0 (XLS-R) front end with the AASIST graph back end (Tak et al., "Automatic
speaker verification spoofing and deepfake detection using wav2vec 2.0 and data augmentation", Odyssey 2022;
published code: TakHemlata/SSL_Anti-spoofing, `model.py`).

The front end is `frontends.wav2vec2`; the back end shares AASIST's blocks (`layers.py`) and graph half
(`aasist.GraphBackEnd`). The state dict has the published names, the front end's in fairseq's
(`ssl_model.model.<fairseq name>`), so that the published checkpoints load unchanged and saved weights load into
the published code.
"""
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .aasist import GraphBackEnd, GraphConfig
from .base import full_precision
from .frontends.wav2vec2 import XLSRConfig, XLSRCountermeasure
from .layers import residual_encoder

_STEM_POOL = 3  # max_pool2d (3, 3) after LL: the published model's only pooling before the graphs


@dataclass(frozen=True, kw_only=True)
class SSLAASISTConfig(GraphConfig, XLSRConfig):
    """SSL-AASIST's `model_config`: the front end's keys (`XLSRConfig`) and the graph back end's, `filts[0]` being
    the width of `LL`."""
    FIRST_WIDTH = "LL_width"
    MIN_FRAMES = 3  # the (3, 3) max-pool after LL

    def __post_init__(self):
        GraphConfig.__post_init__(self)
        XLSRConfig.__post_init__(self)


class SSLAASIST(XLSRCountermeasure, GraphBackEnd):
    """SSL-AASIST countermeasure: raw 16 kHz waveform in, two class logits out (0 spoof, 1 bona fide).

    The published score of an utterance is `logits[:, 1]`: higher means more likely bona fide.
    """

    architecture = "SSL_AASIST"
    channels_last_modules = ("first_bn", "encoder", "first_bn1", "attention")  # the front end has no 2-D layers

    def __init__(self, cfg: SSLAASISTConfig | Mapping[str, Any]):
        super().__init__()
        cfg = self.validated(cfg)
        filts = cfg.filts
        enc_dim = filts[-1][-1]

        self._build_front_end(cfg)
        self.LL = nn.Linear(cfg.ssl.encoder_embed_dim, filts[0])
        self.first_bn = nn.BatchNorm2d(1)
        self.first_bn1 = nn.BatchNorm2d(enc_dim)
        self.selu = nn.SELU(inplace=True)
        # Published: the blocks do not pool (the front end's 20 ms frames are few enough).
        self.encoder = residual_encoder(filts, pool_time=False)
        # Attention weights over time (spectral nodes) and over frequency (temporal nodes); 64 -> 128 -> 64 published.
        self.attention = nn.Sequential(
            nn.Conv2d(enc_dim, 2 * enc_dim, kernel_size=(1, 1)),
            nn.SELU(inplace=True),
            nn.BatchNorm2d(2 * enc_dim),
            nn.Conv2d(2 * enc_dim, enc_dim, kernel_size=(1, 1)),
        )
        self._build_graph(enc_dim, filts[0] // _STEM_POOL, cfg.gat_dims, cfg.pool_ratios, cfg.temperatures)
        self.stem_pool = nn.MaxPool2d((_STEM_POOL, _STEM_POOL))

    def forward(self, x: torch.Tensor, freq_aug: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x: (B, T) float waveform, 16 kHz, T >= `self.min_samples`.
            freq_aug: must be False (it masks AASIST's sinc filters; there are none here).
        Returns:
            last_hidden (B, 5 * gat_dims[1]) and logits (B, 2).
        """
        if freq_aug:
            raise ValueError("freq_aug masks AASIST's sinc filters; SSL_AASIST has none")
        self.check_input(x)
        x = self.LL(self.ssl_model.extract_feat(x))                       # (B, frames, 128)
        x = self.stem_pool(x.transpose(1, 2).unsqueeze(1))                # (B, 1, 42, frames // 3)
        x = self.selu(self.first_bn(x))
        e = self.encoder(x)                                               # (B, C, 42, Tn), Tn = frames // 3
        return self.graph_readout(e)

    @full_precision  # as in AASIST: the graph tail is a small share of the work
    def graph_readout(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output (B, C, 42, Tn) -> attention-weighted spectral nodes (over time) and temporal nodes (over
        frequency), through the graph half."""
        e = self.selu(self.first_bn1(e))
        w = self.attention(e)
        e_S = torch.sum(e * F.softmax(w, dim=-1), dim=-1).transpose(1, 2)   # (B, 42, C): over time
        e_T = torch.sum(e * F.softmax(w, dim=-2), dim=-2).transpose(1, 2)   # (B, Tn, C): over frequency
        return self._graph_attention(e_S, e_T)
