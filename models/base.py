"""What every model offers the rest of the repository: training, scoring, export and the benchmark ask this
interface, never a class name.

A model subclasses `Countermeasure`, sets `nb_samp` and `min_samples` in its constructor, and returns from
`forward(x, freq_aug=False)` what its published code returns, `(last_hidden, output)`; its published score is
`score(output)`, `output[:, 1]` unless it says otherwise. The optional speed capabilities default to "not
supported": a model that declares none still trains, scores, exports and benchmarks.
"""
import functools
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from utils.config import ModelConfig, model_config_from_dict
from utils.errors import InputError

class Countermeasure(nn.Module):
    """A countermeasure: a (B, T) 16 kHz waveform in, `(last_hidden, output)` out, output (B, 2) with class 1
    bona fide.

    Attributes:
        architecture: its `model_config.architecture` name (for messages).
        nb_samp: the samples it is trained and scored on (`model_config.nb_samp`).
        min_samples: the shortest input `forward` takes.
        fixed_length: `forward` takes exactly `nb_samp` samples (its fully connected layers are sized for them).
        supports_freq_aug: `forward(x, freq_aug=True)` masks a band of its filters in training.
        channels_last_modules: submodules that may run in channels-last (NHWC) layout; () = not supported
            (`fast.use_channels_last`).
    """

    architecture: ClassVar[str] = ""
    fixed_length: ClassVar[bool] = False
    supports_freq_aug: ClassVar[bool] = False
    channels_last_modules: ClassVar[tuple[str, ...]] = ()
    nb_samp: int
    min_samples: int

    @classmethod
    def validated(cls, cfg: ModelConfig | Mapping[str, Any]) -> ModelConfig:
        """A constructor's config: a validated one as it is, a config's `model_config` mapping validated (its
        `architecture` defaulting to this model's)."""
        if isinstance(cfg, Mapping):
            cfg = model_config_from_dict({"architecture": cls.architecture, **cfg})
        if cfg.architecture != cls.architecture:
            raise InputError(f"model_config.architecture is {cfg.architecture!r}, not {cls.architecture!r}")
        return cfg

    @staticmethod
    def score(output: torch.Tensor) -> torch.Tensor:
        """The published score from `forward`'s output: (B, 2) -> (B,), higher = more likely bona fide."""
        return output[:, 1]

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse anything but a (batch, samples) waveform of a length `forward` takes, naming the model."""
        if x.dim() != 2:
            raise ValueError(f"{self.architecture} expects a (batch, samples) waveform, got shape {tuple(x.shape)}")
        if self.fixed_length and x.shape[1] != self.nb_samp:
            raise InputError(f"{self.architecture} takes exactly {self.nb_samp} samples per input "
                             f"({self.nb_samp / 16000:.3f} s at 16 kHz; its layers are sized for that length), "
                             f"got {x.shape[1]}")
        if x.shape[1] < self.min_samples:
            raise ValueError(f"{self.architecture} needs at least {self.min_samples} samples per input "
                             f"({self.min_samples / 16000:.3f} s at 16 kHz), got {x.shape[1]}")

    def load_pretrained(self, cfg) -> None:
        """Load the pretrained weights its config names to start training from (none by default)."""

    # --- optional speed capabilities -----------------------------------------------------------------------

    @classmethod
    def supports_gradient_checkpointing(cls) -> bool:
        return cls.use_gradient_checkpointing is not Countermeasure.use_gradient_checkpointing

    def use_gradient_checkpointing(self) -> "Countermeasure":
        """Recompute activations in the backward pass instead of keeping them (same outputs and gradients)."""
        raise InputError(f"gradient_checkpointing: {self.architecture} does not support it")

    @classmethod
    def supports_scoring_in_parts(cls) -> bool:
        return cls.largest_activation is not Countermeasure.largest_activation

    def largest_activation(self, num_samples: int) -> int | None:
        """Elements per utterance of its largest activation for inputs of `num_samples`, which scoring in parts
        (`fast.InParts`) keeps under 2^31 a part; None: not supported."""
        return None


def full_precision(method):
    """Run a method in float32 even under bf16 autocast (its tensor arguments cast to float32): for the small
    tails of a network whose rounding in bf16 costs more accuracy than the time it saves."""
    @functools.wraps(method)
    def run(self, *tensors: torch.Tensor):
        with torch.autocast(tensors[0].device.type, enabled=False):
            return method(self, *(t.float() for t in tensors))
    return run
