"""The wav2vec 2.0 (XLS-R) front end of the XLS-R models (SSL-AASIST and the back ends that share it):
Hugging Face transformers' wav2vec 2.0 (an optional dependency: `pip install transformers`), its sizes
(`SSLConfig`, preset "xlsr_300m"), and its state dict in fairseq's names (`ssl_weights.py`), so that the
published checkpoints, which name it `ssl_model.model.<fairseq name>`, load unchanged.
"""
import contextlib
import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from utils.config import ModelConfig, check
from utils.errors import InputError

from ..base import Countermeasure
from .ssl_weights import PRETRAINING_ONLY, check_sizes, fairseq_to_hf, hf_to_fairseq, is_fairseq_name, read_pretrained

# XLS-R 300M (Babu et al., 2021), the front end of the published SSL-AASIST: fairseq's xlsr2_300m.pt,
# facebook/wav2vec2-xls-r-300m on the Hugging Face hub.
XLSR_300M = {
    "conv_feature_layers": [[512, 10, 5]] + [[512, 3, 2]] * 4 + [[512, 2, 2]] * 2,
    "encoder_layers": 24,
    "encoder_embed_dim": 1024,
    "encoder_ffn_embed_dim": 4096,
    "encoder_attention_heads": 16,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "final_dim": 768,
    "latent_vars": 320,
    "latent_groups": 2,
}


@dataclass(frozen=True)
class SSLConfig:
    """Sizes of a wav2vec 2.0 front end, in fairseq's names (its model cfg's). The layout is fixed: the
    XLS-R one (layer-normalised convolutions with bias, pre-LN transformer, GELU, no dropout).

    `final_dim`, `latent_vars` and `latent_groups` size the pretraining-only tensors (quantizer,
    projections) that checkpoints carry and the forward pass never uses.
    """
    PRESETS: ClassVar[dict] = {"xlsr_300m": XLSR_300M}

    conv_feature_layers: list[list[int]]  # [dim, kernel, stride] per convolution
    encoder_layers: int
    encoder_embed_dim: int
    encoder_ffn_embed_dim: int
    encoder_attention_heads: int
    conv_pos: int                          # positional convolution kernel
    conv_pos_groups: int
    final_dim: int
    latent_vars: int
    latent_groups: int

    def __post_init__(self):
        for i, layer in enumerate(self.conv_feature_layers):
            check(len(layer) == 3 and all(v > 0 for v in layer), f"model_config.ssl.conv_feature_layers[{i}]",
              "[dim, kernel, stride] of positive ints", layer)
        check(len(self.conv_feature_layers) > 0, "model_config.ssl.conv_feature_layers", "non-empty",
              self.conv_feature_layers)
        for f in dataclasses.fields(self):
            if f.type is int:
                check(getattr(self, f.name) > 0, f"model_config.ssl.{f.name}", "positive", getattr(self, f.name))
        for key, whole in (("encoder_attention_heads", "encoder_embed_dim"), ("conv_pos_groups", "encoder_embed_dim"),
                           ("latent_groups", "final_dim")):
            check(getattr(self, whole) % getattr(self, key) == 0, f"model_config.ssl.{key}",
                  f"a divisor of {whole} ({getattr(self, whole)})", getattr(self, key))


def ssl_min_input_length(conv_feature_layers: list, frames: int = 3) -> int:
    """Shortest waveform, in samples, that gives `frames` wav2vec 2.0 frames (SSL-AASIST: three, for the
    (3, 3) max-pool after `LL`), traced back through the convolutions `[dim, kernel, stride]`. XLS-R's three
    frames: 1,040 samples."""
    length = frames
    for _, kernel, stride in reversed(conv_feature_layers):
        length = (length - 1) * stride + kernel
    return length


def ssl_frames(num_samples: int, conv_feature_layers: list) -> int:
    """wav2vec 2.0 frames of a waveform of `num_samples` (the convolutions `[dim, kernel, stride]`, no padding):
    XLS-R's 64,600 samples give 201 frames."""
    frames = num_samples
    for _, kernel, stride in conv_feature_layers:
        frames = (frames - kernel) // stride + 1
    return frames


@dataclass(frozen=True, kw_only=True)
class XLSRConfig(ModelConfig):
    """The `model_config` keys of every model on this front end: the wav2vec 2.0 sizes (`ssl`, a preset name such
    as "xlsr_300m" or an object of sizes), the weights to start from, and whether the front end trains.
    A back end's config subclasses it with its own keys; `MIN_FRAMES` is the fewest frames its back end takes."""
    ssl: SSLConfig
    ssl_pretrained: str = ""               # XLS-R weights to start from (HF folder or fairseq .pt)
    freeze_ssl: bool = False               # train the back end only

    MIN_FRAMES: ClassVar[int] = 1

    def __post_init__(self):
        least = ssl_min_input_length(self.ssl.conv_feature_layers, self.MIN_FRAMES)
        check(self.nb_samp >= least, "model_config.nb_samp",
              f"at least {least} ({self.MIN_FRAMES} wav2vec 2.0 frame{'s' * (self.MIN_FRAMES > 1)})", self.nb_samp)


class XLSRCountermeasure(Countermeasure):
    """What the models on this front end share: the front end (`ssl_model`, the published attribute name), the
    input lengths, loading the pretrained XLS-R weights, and gradient checkpointing of its transformer."""

    def _build_front_end(self, cfg: XLSRConfig) -> None:
        self.nb_samp = cfg.nb_samp
        self.min_samples = ssl_min_input_length(cfg.ssl.conv_feature_layers, cfg.MIN_FRAMES)
        self.ssl_model = Wav2Vec2FrontEnd(cfg.ssl, freeze=cfg.freeze_ssl)

    def load_pretrained(self, cfg: XLSRConfig) -> None:
        """The XLS-R weights `cfg.ssl_pretrained` names, if any, into the front end. `models.build_model` calls
        it, not the constructor: weights that replace them all (a checkpoint, a resumed run) need not read them."""
        if cfg.ssl_pretrained:
            try:
                self.ssl_model.load_pretrained(cfg.ssl_pretrained)
            except InputError as e:
                raise InputError(f"model_config.ssl_pretrained: {e}") from None

    def use_gradient_checkpointing(self) -> "XLSRCountermeasure":
        """Keep only each transformer layer's input in training and recompute the layer in the backward pass
        (transformers' gradient checkpointing): less memory for XLS-R fine-tuning, about a third more compute.
        Outputs and gradients are unchanged."""
        model = self.ssl_model.model
        if hasattr(model, "activation_checkpointing_enable"):  # its name from transformers 5.x on
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return self


def _transformers():
    try:
        import transformers
    except ImportError:
        raise InputError("the wav2vec 2.0 (XLS-R) front end needs Hugging Face transformers: "
                         "pip install transformers") from None
    return transformers


def wav2vec2_config(ssl: SSLConfig):
    """transformers' `Wav2Vec2Config` for the fairseq model of these sizes, in the XLS-R layout: layer-normalised
    convolutions with bias, pre-LN transformer (`do_stable_layer_norm`), GELU, no dropout, no masking."""
    dims, kernels, strides = zip(*ssl.conv_feature_layers)
    return _transformers().Wav2Vec2Config(
        conv_dim=list(dims), conv_kernel=list(kernels), conv_stride=list(strides), conv_bias=True,
        feat_extract_norm="layer", feat_extract_activation="gelu", do_stable_layer_norm=True,
        num_hidden_layers=ssl.encoder_layers, hidden_size=ssl.encoder_embed_dim,
        intermediate_size=ssl.encoder_ffn_embed_dim, num_attention_heads=ssl.encoder_attention_heads,
        hidden_act="gelu", layer_norm_eps=1e-5,
        num_conv_pos_embeddings=ssl.conv_pos, num_conv_pos_embedding_groups=ssl.conv_pos_groups,
        hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0,
        feat_quantizer_dropout=0.0, final_dropout=0.0, layerdrop=0.0,
        apply_spec_augment=False, mask_time_prob=0.0, mask_feature_prob=0.0,
        codevector_dim=ssl.final_dim, proj_codevector_dim=ssl.final_dim,
        num_codevectors_per_group=ssl.latent_vars, num_codevector_groups=ssl.latent_groups,
    )


class Wav2Vec2FrontEnd(nn.Module):
    """The published `SSLModel`: wav2vec 2.0 hidden states of a raw 16 kHz waveform, `(B, T) -> (B, frames, E)`.

    `model` is transformers' `Wav2Vec2ForPreTraining`; only its `wav2vec2` part runs. The pretraining
    tensors (`mask_emb`, quantizer, `project_q`, `final_proj`) are there because the published checkpoints
    carry them: frozen, unused, saved back unchanged.

    Args:
        ssl: the sizes (`SSLConfig`).
        freeze: no gradient into the front end (its parameters get `requires_grad=False`, and it runs
            under `torch.no_grad()`): only the back end trains.
    """

    def __init__(self, ssl: SSLConfig, freeze: bool = False):
        super().__init__()
        self.sizes = ssl
        self.model = _transformers().Wav2Vec2ForPreTraining(wav2vec2_config(ssl))
        # fairseq's mask_emb; transformers makes it only when masking is on, which it is not here.
        self.model.wav2vec2.masked_spec_embed = nn.Parameter(torch.zeros(ssl.encoder_embed_dim))
        for name, p in self.named_parameters():
            p.requires_grad = not freeze and not _pretraining_only(name)
        self.frozen = freeze
        self.register_state_dict_post_hook(_to_published_names)
        self.register_load_state_dict_pre_hook(_from_published_names)

    def extract_feat(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) waveform -> (B, frames, E): the last transformer layer after the encoder's final layer norm
        (pre-LN), as fairseq's `model(x, mask=False, features_only=True)["x"]`; no waveform normalisation."""
        with torch.no_grad() if self.frozen else contextlib.nullcontext():
            return self.model.wav2vec2(x).last_hidden_state

    def layer_results(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, T) waveform -> each transformer layer's output, (B, frames, E) each, first layer first: fairseq's
        `layer_results` (transposed from its (frames, B, E)), taken *before* the encoder's final layer norm, which
        only the last layer's output gets for `extract_feat`. These are transformers' `hidden_states[1:]`
        (`hidden_states[0]` is the first layer's input); transformers 4.x replaced the last one by its
        normalised value, which is refused here."""
        with torch.no_grad() if self.frozen else contextlib.nullcontext():
            out = self.model.wav2vec2(x, output_hidden_states=True)
        layers = out.hidden_states[1:]
        if layers[-1] is out.last_hidden_state:
            raise InputError("every wav2vec 2.0 layer's output before the final layer norm needs transformers 5 or "
                             "later (this one returns the last layer normalised): pip install -U transformers")
        return layers

    def load_pretrained(self, path: str) -> None:
        """Load XLS-R (a Hugging Face folder or fairseq's .pt, `ssl_weights.read_pretrained`). The file's stated
        sizes must be the model's; pretraining tensors it lacks keep their values."""
        found, sizes = read_pretrained(path)
        check_sizes(sizes, self.sizes, str(path))
        own = hf_to_fairseq(self.model.state_dict())
        problems = {
            "shape mismatch": [f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                               for k, v in found.items() if k in own and v.shape != own[k].shape],
            "missing": [k for k in own if k not in found and not k.startswith(PRETRAINING_ONLY)],
            "unexpected": [k for k in found if k not in own],
        }
        if any(problems.values()):
            raise InputError(f"{path} does not fit model_config.ssl; " + "; ".join(
                f"{label} ({len(keys)}): {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
                for label, keys in problems.items() if keys))
        self.model.load_state_dict(fairseq_to_hf(found, str(path)), strict=False)


def _pretraining_only(hf_name: str) -> bool:
    return hf_name.startswith(("model.quantizer.", "model.project_", "model.wav2vec2.masked_spec_embed"))


def _to_published_names(module, state_dict, prefix, local_metadata) -> None:
    """state_dict post-hook: transformers' names under `<prefix>model.` -> fairseq's, in fairseq's order."""
    inner = prefix + "model."
    ours = {k[len(inner):]: state_dict.pop(k) for k in [k for k in state_dict if k.startswith(inner)]}
    for name, tensor in hf_to_fairseq(ours).items():
        state_dict[inner + name] = tensor


def _from_published_names(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                          error_msgs) -> None:
    """load_state_dict pre-hook: fairseq's names under `<prefix>model.` -> transformers'. Other names are left
    as they are, for the strict check to report."""
    inner = prefix + "model."
    names = [k for k in state_dict if k.startswith(inner) and is_fairseq_name(k[len(inner):])]
    renamed = fairseq_to_hf({k[len(inner):]: state_dict.pop(k) for k in names})
    state_dict.update({inner + k: v for k, v in renamed.items()})
