"""XLSR-SLS: XLS-R with a sensitive layer selection classifier (Zhang, Wen and Hu, "Audio Deepfake Detection with
Self-Supervised XLS-R and SLS Classifier", ACM Multimedia 2024; published code: QiShanZhang/SLSforASVspoof-2021-DF,
`model.py`, class `Model`).

Every transformer layer's output (before the encoder's final layer norm, as fairseq's `layer_results` gives them)
gets a weight, sigmoid(`fc0`(its mean over time)); the weighted layers are summed, then BatchNorm over the one
channel, SELU, a (3, 3) max-pool over (frames, width), and two fully connected layers. `fc1` is sized for the
pooled map of `nb_samp` samples ((1024 // 3) * (201 // 3) = 22,847 inputs for XLS-R at 64,600 samples), so the
model takes exactly `nb_samp` samples. The output is a log-softmax, as published (its score is `output[:, 1]`;
cross-entropy on it equals cross-entropy on the logits, since log-softmax is idempotent). State-dict names are
the published ones (`ssl_model.model.<fairseq name>`, `first_bn`, `fc0`, `fc1`, `fc3`).
"""
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from utils.config import check

from .frontends.wav2vec2 import XLSRConfig, XLSRCountermeasure, ssl_frames

_POOL = 3  # the (3, 3) max-pool before fc1
_HIDDEN = 1024  # fc1's width, published


@dataclass(frozen=True, kw_only=True)
class SLSConfig(XLSRConfig):
    """XLSR-SLS's `model_config`: the front end's keys (`XLSRConfig`); `nb_samp` also sizes `fc1`."""
    MIN_FRAMES = _POOL

    def __post_init__(self):
        super().__post_init__()
        check(self.ssl.encoder_embed_dim >= _POOL, "model_config.ssl.encoder_embed_dim",
              f"at least {_POOL} for XLSR_SLS (its max-pool)", self.ssl.encoder_embed_dim)


class XLSRSLS(XLSRCountermeasure):
    """XLSR-SLS countermeasure: exactly `nb_samp` samples of 16 kHz waveform in, the published log-softmax out
    (column 0 spoof, 1 bona fide)."""

    architecture = "XLSR_SLS"
    fixed_length = True

    def __init__(self, cfg: SLSConfig | Mapping[str, Any]):
        super().__init__()
        cfg = self.validated(cfg)
        self._build_front_end(cfg)
        width = cfg.ssl.encoder_embed_dim
        pooled = (ssl_frames(cfg.nb_samp, cfg.ssl.conv_feature_layers) // _POOL) * (width // _POOL)
        self.first_bn = nn.BatchNorm2d(1)
        self.selu = nn.SELU(inplace=True)
        self.fc0 = nn.Linear(width, 1)
        self.fc1 = nn.Linear(pooled, _HIDDEN)
        self.fc3 = nn.Linear(_HIDDEN, 2)

    def forward(self, x: torch.Tensor, freq_aug: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x: (B, nb_samp) float waveform, 16 kHz.
            freq_aug: must be False (it masks AASIST's sinc filters; there are none here).
        Returns:
            the input of `fc3` (B, 1024) and the log-softmax (B, 2).
        """
        if freq_aug:
            raise ValueError("freq_aug masks AASIST's sinc filters; XLSR_SLS has none")
        self.check_input(x)
        layers = torch.stack(self.ssl_model.layer_results(x), dim=1)     # (B, L, frames, E)
        weights = torch.sigmoid(self.fc0(layers.mean(dim=2)))            # (B, L, 1): one weight per layer
        x = torch.sum(layers * weights.unsqueeze(-1), dim=1)              # (B, frames, E)
        x = self.selu(self.first_bn(x.unsqueeze(1)))                     # (B, 1, frames, E)
        x = torch.flatten(F.max_pool2d(x, (_POOL, _POOL)), 1)            # (B, frames // 3 * E // 3)
        hidden = self.selu(self.fc1(x))
        return hidden, F.log_softmax(self.selu(self.fc3(hidden)), dim=1)
