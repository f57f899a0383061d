"""SSL-AASIST: a wav2vec 2.0 (XLS-R) front end with the AASIST graph back end (Tak et al., "Automatic
speaker verification spoofing and deepfake detection using wav2vec 2.0 and data augmentation", Odyssey 2022).

The front end is Hugging Face transformers' wav2vec 2.0 (an optional dependency: `pip install transformers`);
the back end shares AASIST's blocks (`layers.py`) and graph half (`aasist.GraphBackEnd`). The state dict has
the published names, the front end's in fairseq's (`ssl_model.model.<fairseq name>`), so that the published
checkpoints load unchanged and saved weights load into the published code: the front end renames its keys
on the way out and in (`ssl_weights.py`).
"""
import contextlib
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from utils.config import ModelConfig, SSLConfig, model_config_from_dict, ssl_min_input_length
from utils.errors import InputError

from . import fast as fast_ops
from .aasist import GraphBackEnd, check_waveform
from .layers import residual_encoder
from .ssl_weights import PRETRAINING_ONLY, check_sizes, fairseq_to_hf, hf_to_fairseq, is_fairseq_name, read_pretrained

_STEM_POOL = 3  # max_pool2d (3, 3) after LL: the published model's only pooling before the graphs


def _transformers():
    try:
        import transformers
    except ImportError:
        raise InputError("SSL_AASIST's wav2vec 2.0 front end needs Hugging Face transformers: "
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


class SSLAASIST(GraphBackEnd):
    """SSL-AASIST countermeasure: raw 16 kHz waveform in, two class logits out (0 spoof, 1 bona fide).

    Args:
        model_config: a `ModelConfig` with `architecture` "SSL_AASIST", or the config's `model_config`
            mapping (validated here): `ssl`, `freeze_ssl`, `filts` (filts[0]: the width of `LL`), `gat_dims`,
            `pool_ratios`, `temperatures`, `nb_samp`. `ssl_pretrained` is read by `build_model`.
        fast: max-pool without autograd by a reshape (`fast.max_pool`); False: `F.max_pool2d`.

    The published score of an utterance is `logits[:, 1]`: higher means more likely bona fide.
    """

    def __init__(self, model_config: ModelConfig | Mapping[str, Any], fast: bool = True):
        super().__init__()
        cfg = model_config if isinstance(model_config, ModelConfig) else model_config_from_dict(model_config)
        if cfg.architecture != "SSL_AASIST":
            raise InputError(f"model_config.architecture must be 'SSL_AASIST' for SSLAASIST, got {cfg.architecture!r}")
        self.nb_samp = cfg.nb_samp
        self.min_samples = ssl_min_input_length(cfg.ssl.conv_feature_layers)
        filts = cfg.filts
        enc_dim = filts[-1][-1]

        self.ssl_model = Wav2Vec2FrontEnd(cfg.ssl, freeze=cfg.freeze_ssl)
        self.LL = nn.Linear(cfg.ssl.encoder_embed_dim, filts[0])
        self.first_bn = nn.BatchNorm2d(1)
        self.first_bn1 = nn.BatchNorm2d(enc_dim)
        self.selu = nn.SELU(inplace=True)
        # Published: the blocks do not pool (the front end's 20 ms frames are few enough).
        self.encoder = residual_encoder(filts, fast=fast, pool_time=False)
        # Attention weights over time (spectral nodes) and over frequency (temporal nodes); 64 -> 128 -> 64 published.
        self.attention = nn.Sequential(
            nn.Conv2d(enc_dim, 2 * enc_dim, kernel_size=(1, 1)),
            nn.SELU(inplace=True),
            nn.BatchNorm2d(2 * enc_dim),
            nn.Conv2d(2 * enc_dim, enc_dim, kernel_size=(1, 1)),
        )
        self._build_graph(enc_dim, filts[0] // _STEM_POOL, cfg.gat_dims, cfg.pool_ratios, cfg.temperatures)
        self.pool = fast_ops.max_pool if fast else F.max_pool2d
        self.channels_last = False

    def use_channels_last(self) -> "SSLAASIST":
        """Run the back end's convolutions in channels-last (NHWC) layout (the front end has no 2-D ones)."""
        for module in (self.first_bn, self.encoder, self.first_bn1, self.attention):
            module.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def use_gradient_checkpointing(self) -> "SSLAASIST":
        """Keep only each transformer layer's input in training and recompute the layer in the backward pass
        (transformers' gradient checkpointing): less memory for XLS-R fine-tuning, about a third more compute.
        Outputs and gradients are unchanged."""
        model = self.ssl_model.model
        if hasattr(model, "activation_checkpointing_enable"):  # its name from transformers 5.x on
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return self

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
        check_waveform(x, self.min_samples, "SSL_AASIST")
        x = self.LL(self.ssl_model.extract_feat(x))                       # (B, frames, 128)
        x = self.pool(x.transpose(1, 2).unsqueeze(1), (3, 3))             # (B, 1, 42, frames // 3)
        if self.channels_last:
            x = fast_ops.nhwc_strides(x)
        x = self.selu(self.first_bn(x))
        e = self.encoder(x)                                               # (B, C, 42, Tn), Tn = frames // 3
        # fp32 from here on, as in AASIST (the graph tail is a small share of the work).
        with torch.autocast(e.device.type, enabled=False):
            e = self.selu(self.first_bn1(e.float()))
            w = self.attention(e)
            e_S = torch.sum(e * F.softmax(w, dim=-1), dim=-1).transpose(1, 2)   # (B, 42, C): over time
            e_T = torch.sum(e * F.softmax(w, dim=-2), dim=-2).transpose(1, 2)   # (B, Tn, C): over frequency
            return self._graph_attention(e_S, e_T)
