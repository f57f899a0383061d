"""wav2vec 2.0 weights in the two layouts they come in, and reading XLS-R files without running pickled code.

The published SSL-AASIST names its front end as fairseq does (`ssl_model.model.<fairseq name>`, the
positional convolution with weight normalisation as `weight_g` / `weight_v`); this project runs Hugging Face
transformers' wav2vec 2.0, whose names differ. `fairseq_to_hf` and `hf_to_fairseq` map one to the other,
name for name, tensors untouched; `hf_to_fairseq` also puts the names in fairseq's state-dict order.

`read_pretrained(path)` reads XLS-R (or any wav2vec 2.0 of the same layout) in fairseq's names from

- a Hugging Face folder (`config.json` and `model.safetensors`, sharded safetensors or `pytorch_model.bin`),
  e.g. `hf download facebook/wav2vec2-xls-r-300m --local-dir DIR`, a snapshot folder of the hub cache, or a
  model id such as "facebook/wav2vec2-xls-r-300m" found in that cache (never downloaded);
- fairseq's checkpoint file (`xlsr2_300m.pt`), read with `torch.load(weights_only=True)`: the classes its
  pickle names from the packages fairseq checkpoints use (argparse, collections, omegaconf, fairseq, numpy,
  enum, typing) become inert stand-ins that record their arguments and run nothing; any other is refused,
  unrun.

With each it returns the sizes the file states (its config), in `SSLConfig`'s names, to check against the
model's before loading.
"""
import ast
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from utils.errors import InputError
from utils.io import read_json, safe_torch_load

# (fairseq name, transformers Wav2Vec2ForPreTraining name), in fairseq's state-dict order; {n} is a layer
# number. A name matches the first pair whose left (or right) side starts it; the rest of the name is kept.
_NAME_PAIRS = (
    ("mask_emb", "wav2vec2.masked_spec_embed"),                                   # pretraining only
    ("feature_extractor.conv_layers.{n}.0.", "wav2vec2.feature_extractor.conv_layers.{n}.conv."),
    ("feature_extractor.conv_layers.{n}.2.1.", "wav2vec2.feature_extractor.conv_layers.{n}.layer_norm."),
    ("post_extract_proj.", "wav2vec2.feature_projection.projection."),
    ("quantizer.vars", "quantizer.codevectors"),                                  # pretraining only
    ("quantizer.weight_proj.", "quantizer.weight_proj."),                         # pretraining only
    ("project_q.", "project_q."),                                                 # pretraining only
    ("encoder.pos_conv.0.bias", "wav2vec2.encoder.pos_conv_embed.conv.bias"),
    ("encoder.pos_conv.0.weight_g", "wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    ("encoder.pos_conv.0.weight_v", "wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    ("encoder.layers.{n}.self_attn.", "wav2vec2.encoder.layers.{n}.attention."),
    ("encoder.layers.{n}.self_attn_layer_norm.", "wav2vec2.encoder.layers.{n}.layer_norm."),
    ("encoder.layers.{n}.fc1.", "wav2vec2.encoder.layers.{n}.feed_forward.intermediate_dense."),
    ("encoder.layers.{n}.fc2.", "wav2vec2.encoder.layers.{n}.feed_forward.output_dense."),
    ("encoder.layers.{n}.final_layer_norm.", "wav2vec2.encoder.layers.{n}.final_layer_norm."),
    ("encoder.layer_norm.", "wav2vec2.encoder.layer_norm."),
    ("layer_norm.", "wav2vec2.feature_projection.layer_norm."),                   # over the conv channels
    ("final_proj.", "project_hid."),                                              # pretraining only
)
PRETRAINING_ONLY = ("mask_emb", "quantizer.", "project_q.", "final_proj.")  # fairseq names the forward never uses

# Older transformers saved the positional convolution with torch's first weight norm.
_HF_ALIASES = {"encoder.pos_conv_embed.conv.weight_g": "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
               "encoder.pos_conv_embed.conv.weight_v": "encoder.pos_conv_embed.conv.parametrizations.weight.original1"}
_HF_BASE = ("feature_extractor.", "feature_projection.", "encoder.", "masked_spec_embed")  # Wav2Vec2Model's own


def _pattern(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(r"\{n\}", r"(\d+)"))


def _section(template: str) -> int:
    """Rank of a pair's section in fairseq's order: all pairs of one layer stack share the first one's."""
    stem = template.split("{n}")[0]
    return next(i for i, (fs, _) in enumerate(_NAME_PAIRS) if fs.split("{n}")[0] == stem)


_PAIRS = [(_pattern(fs), _pattern(hf), fs, hf, _section(fs), i) for i, (fs, hf) in enumerate(_NAME_PAIRS)]


def _rename(name: str, to_hf: bool) -> tuple[str, tuple[int, int, int]] | None:
    """`name` in the other layout and its rank in fairseq's order, or None for a name of neither."""
    for fs_re, hf_re, fs, hf, section, index in _PAIRS:
        match = (fs_re if to_hf else hf_re).match(name)
        if match:
            layer = match.group(1) if match.groups() else ""
            target = (hf if to_hf else fs).replace("{n}", layer)
            return target + name[match.end():], (section, int(layer or 0), index)
    return None


def fairseq_to_hf(state_dict: Mapping[str, torch.Tensor], source: str = "weights") -> dict[str, torch.Tensor]:
    """fairseq wav2vec 2.0 names -> transformers `Wav2Vec2ForPreTraining` names (same tensors).

    Raises:
        InputError: for names of neither layout, naming `source` and the first few.
    """
    renamed = {k: _rename(k, to_hf=True) for k in state_dict}
    _refuse_unknown([k for k, r in renamed.items() if r is None], source)
    return {renamed[k][0]: v for k, v in state_dict.items()}


def hf_to_fairseq(state_dict: Mapping[str, torch.Tensor], source: str = "weights") -> dict[str, torch.Tensor]:
    """transformers `Wav2Vec2ForPreTraining` names -> fairseq names (same tensors), in fairseq's order."""
    renamed = {k: _rename(k, to_hf=False) for k in state_dict}
    _refuse_unknown([k for k, r in renamed.items() if r is None], source)
    order = sorted(state_dict, key=lambda k: renamed[k][1])  # stable: keeps the order within a section
    return {renamed[k][0]: state_dict[k] for k in order}


def is_fairseq_name(name: str) -> bool:
    return _rename(name, to_hf=True) is not None


def _refuse_unknown(names: list[str], source: str) -> None:
    if names:
        raise InputError(f"{source}: {len(names)} name(s) of no wav2vec 2.0 layout: "
                         f"{', '.join(names[:6])}{' ...' if len(names) > 6 else ''}")


# --- reading files ----------------------------------------------------------------------------

def read_pretrained(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """wav2vec 2.0 weights in fairseq's names and the sizes the file states (`SSLConfig` names; only those
    it states), from a Hugging Face folder or a fairseq checkpoint file."""
    path = Path(path)
    if not path.exists():
        cached = hub_cache_folder(str(path))
        if cached is None:
            raise InputError(f"wav2vec 2.0 weights not found: {path} (a Hugging Face folder such as "
                             "facebook/wav2vec2-xls-r-300m downloaded with `hf download`, that model id once it "
                             "is in the Hugging Face cache, or fairseq's xlsr2_300m.pt)")
        path = cached
    found = read_hf_folder(path) if path.is_dir() else read_fairseq_checkpoint(path)
    from ..loading import check_finite  # here: models.loading imports this module's users
    check_finite(found[0], f"wav2vec 2.0 weights {path}")  # NaN weights would only show as a NaN loss
    return found


def hub_cache_folder(model_id: str) -> Path | None:
    """The Hugging Face cache's snapshot folder of a model id such as "facebook/wav2vec2-xls-r-300m", or None
    when it is not an id or not cached. Never downloads (`local_files_only`)."""
    if model_id.count("/") != 1 or model_id.startswith((".", "/")):
        return None
    try:
        from huggingface_hub import snapshot_download  # installed with transformers
        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception:  # not installed, not an id, not cached: the caller says what to do
        return None


def read_hf_folder(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A Hugging Face wav2vec 2.0 folder: `config.json` and its weights, read without unpickling code.

    Heads other than the pretraining ones (a CTC `lm_head`, a classifier) are left out.
    """
    if not (folder / "config.json").exists():
        raise InputError(f"{folder} has no config.json: not a Hugging Face model folder")
    config = read_json(folder / "config.json", "Hugging Face model config", expect=dict)
    sizes = _sizes_from_hf_config(config, folder / "config.json")
    weights = _read_hf_weights(folder)
    _check_state_dict(weights, str(folder))
    state_dict = {}
    for key, tensor in weights.items():
        key = key.removeprefix("wav2vec2.")
        key = "wav2vec2." + _HF_ALIASES.get(key, key) if key.startswith(_HF_BASE) else key
        if _rename(key, to_hf=False) is not None:
            state_dict[key] = tensor
    return hf_to_fairseq(state_dict, str(folder)), sizes


def _read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    shards = sorted(folder.glob("model*.safetensors"))
    if shards:
        from safetensors.torch import load_file  # installed with transformers
        state_dict = {}
        for shard in shards:
            try:
                state_dict.update(load_file(shard))
            except Exception as e:  # safetensors raises its own error types for a damaged file
                raise InputError(f"cannot read {shard}: {e}") from None
        return state_dict
    if (folder / "pytorch_model.bin").is_file():
        return safe_torch_load(folder / "pytorch_model.bin")
    raise InputError(f"{folder} holds no model.safetensors or pytorch_model.bin")


def _sizes_from_hf_config(config: Mapping[str, Any], source: Path) -> dict[str, Any]:
    if config.get("feat_extract_norm", "layer") != "layer" or not config.get("do_stable_layer_norm", True):
        raise InputError(f"{source}: not the XLS-R layout SSL-AASIST uses (it needs feat_extract_norm \"layer\" "
                         "and do_stable_layer_norm true: layer-normalised convolutions, a pre-LN transformer)")
    names = {"encoder_layers": "num_hidden_layers", "encoder_embed_dim": "hidden_size",
             "encoder_ffn_embed_dim": "intermediate_size", "encoder_attention_heads": "num_attention_heads",
             "conv_pos": "num_conv_pos_embeddings", "conv_pos_groups": "num_conv_pos_embedding_groups",
             "final_dim": "proj_codevector_dim", "latent_vars": "num_codevectors_per_group",
             "latent_groups": "num_codevector_groups"}
    sizes = {ours: _size(config[theirs], theirs, source) for ours, theirs in names.items() if theirs in config}
    conv = ("conv_dim", "conv_kernel", "conv_stride")
    if all(k in config for k in conv):
        for key in conv:
            value = config[key]
            if not isinstance(value, list) or not 0 < len(value) <= MAX_CONV_LAYERS:
                raise InputError(f"{source}: {key} must be a list of 1 to {MAX_CONV_LAYERS} sizes, one per "
                                 f"convolution, got {_short(value)}")
            for size in value:
                _size(size, key, source)
        if len({len(config[k]) for k in conv}) > 1:
            raise InputError(f"{source}: conv_dim, conv_kernel and conv_stride must have one entry per "
                             f"convolution each, got {', '.join(str(len(config[k])) for k in conv)} entries")
        sizes["conv_feature_layers"] = [list(c) for c in zip(*(config[k] for k in conv))]
    return sizes


def _size(value: Any, key: str, source: Path) -> int:
    """A size a config states: a positive integer (not a boolean), else an InputError naming the key."""
    if type(value) is not int or not 0 < value < 2 ** 31:
        raise InputError(f"{source}: {key} must be a positive integer, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + " ..."


def read_fairseq_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """fairseq's wav2vec 2.0 checkpoint (e.g. `xlsr2_300m.pt`): its `model` tensors, and the sizes of its
    model config (`cfg["model"]`, or the older `args`) where that is plain data."""
    checkpoint = _load_with_stand_ins(path)
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("model"), Mapping):
        raise InputError(f"{path} is not a fairseq checkpoint (no 'model' state dict)")
    _check_state_dict(checkpoint["model"], f"{path} ('model')")
    # A fine-tuned fairseq model (Wav2VecCtc) keeps the wav2vec 2.0 under w2v_encoder.w2v_model.
    state_dict = {k.removeprefix("w2v_encoder.w2v_model."): v for k, v in checkpoint["model"].items()}
    state_dict = {k: v for k, v in state_dict.items() if is_fairseq_name(k)}
    return state_dict, _sizes_from_fairseq_cfg(_model_cfg(checkpoint), path)


def _model_cfg(checkpoint: Mapping) -> Mapping:
    cfg = checkpoint.get("cfg")
    if isinstance(cfg, Mapping) and isinstance(cfg.get("model"), Mapping):
        return cfg["model"]
    args = checkpoint.get("args")  # checkpoints before fairseq's hydra configs: an argparse.Namespace
    if isinstance(args, _StandIn) and isinstance(args.state, Mapping):
        return args.state
    return {}


def _sizes_from_fairseq_cfg(cfg: Mapping[str, Any], source: Path) -> dict[str, Any]:
    cfg = {k: _plain(v) for k, v in cfg.items()}
    if cfg.get("extractor_mode", "layer_norm") != "layer_norm" or cfg.get("layer_norm_first", True) is False:
        raise InputError(f"{source}: not the XLS-R layout SSL-AASIST uses (it needs extractor_mode "
                         "\"layer_norm\" and layer_norm_first true)")
    keys = ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads", "conv_pos",
            "conv_pos_groups", "final_dim", "latent_vars", "latent_groups")
    sizes = {k: _size(cfg[k], k, source) for k in keys if isinstance(cfg.get(k), int)}
    if isinstance(cfg.get("conv_feature_layers"), str):
        sizes["conv_feature_layers"] = parse_conv_layers(cfg["conv_feature_layers"], source)
    return sizes


def _plain(value: Any) -> Any:
    """An enum member's value (fairseq's config enums unpickle as stand-ins holding it); anything else as is."""
    return value.args[0] if isinstance(value, _StandIn) and len(value.args) == 1 else value


MAX_CONV_LAYERS = 64  # wav2vec 2.0 and XLS-R have 7; a file may state no more than this
_MAX_CONV_TEXT = 2000  # characters of a conv_feature_layers string


def parse_conv_layers(text: str, source: Any = "cfg") -> list[list[int]]:
    """fairseq's `conv_feature_layers` string, e.g. "[(512, 10, 5)] + [(512, 3, 2)] * 4", as a list of
    [dim, kernel, stride], read without `eval`: only lists and tuples of ints, `+` and `* int`. What a file can
    make it build is bounded: at most `MAX_CONV_LAYERS` layers of positive 32-bit sizes, checked before a
    list is repeated, so "[(16, 10, 5)] * 300000000" is refused at once."""
    def value(node):
        if isinstance(node, (ast.List, ast.Tuple)):
            return bounded([value(e) for e in node.elts])
        if isinstance(node, ast.Constant) and type(node.value) is int:
            if not 0 < node.value < 2 ** 31:
                digits = str(node.value)
                shown = digits if len(digits) <= 20 else f"of {len(digits)} digits"
                raise ValueError(f"a size {shown} (sizes are positive 32-bit integers)")
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = value(node.left), value(node.right)
            if not (isinstance(left, list) and isinstance(right, list)):
                raise ValueError("+ joins lists")
            return bounded(left + right)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            left, right = value(node.left), value(node.right)
            items, times = (left, right) if isinstance(left, list) else (right, left)
            if not (isinstance(items, list) and isinstance(times, int)):
                raise ValueError("* repeats a list a number of times")
            return bounded(items * (times if len(items) * times <= MAX_CONV_LAYERS else MAX_CONV_LAYERS + 1))
        raise ValueError("only lists and tuples of integers, + and * are allowed")

    def bounded(items: list) -> list:
        if len(items) > MAX_CONV_LAYERS:
            raise ValueError(f"more than {MAX_CONV_LAYERS} layers")
        return items

    shown = repr(text[:60]) + (f" ... ({len(text)} characters)" if len(text) > 60 else "")
    if len(text) > _MAX_CONV_TEXT:
        raise InputError(f"{source}: conv_feature_layers {shown} is too long (over {_MAX_CONV_TEXT} characters)")
    try:
        layers = value(ast.parse(text, mode="eval").body)
    except (SyntaxError, RecursionError, MemoryError):
        layers, problem = None, "not a Python list expression"
    except ValueError as e:
        layers, problem = None, str(e)
    if layers is not None:
        if isinstance(layers, list) and layers and all(isinstance(c, list) and len(c) == 3
                                                       and all(type(v) is int for v in c) for c in layers):
            return layers
        problem = "expected a list of (dim, kernel, stride)"
    raise InputError(f"{source}: cannot read conv_feature_layers {shown}: {problem}")


def check_sizes(found: Mapping[str, Any], expected: Any, source: str) -> None:
    """Refuse a file whose stated sizes differ from the model's (`expected`: an `SSLConfig`), naming the key."""
    for key, value in found.items():
        if value != getattr(expected, key):
            raise InputError(f"{source} holds a wav2vec 2.0 with {key} {value}, but model_config.ssl.{key} is "
                             f"{getattr(expected, key)}")


# --- unpickling without running code ------------------------------------------------------------

# Packages whose classes fairseq checkpoints name in their pickles (configs, enums, logged numbers).
_STAND_IN_PACKAGES = ("argparse", "collections", "omegaconf", "fairseq", "numpy", "enum", "typing")


class _StandIn:
    """Takes the place of a class or function a checkpoint's pickle names: it records the arguments and
    the state the pickle gives it and runs nothing of the original."""

    def __init__(self, *args, **kwargs):
        self.args, self.state = args, None

    def __setstate__(self, state):
        self.state = state


def _load_with_stand_ins(path: Path) -> Any:
    """`safe_torch_load(path)` where the classes of `_STAND_IN_PACKAGES` that the pickle names become
    `_StandIn`s; a pickle that names anything else is refused before it is read."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except ValueError:  # the pre-1.6 format: no static listing, weights_only alone decides
        names = []
    except pickle.UnpicklingError:  # an opcode the static listing does not know: weights_only alone decides
        names = []
    except (OSError, RuntimeError) as e:
        raise InputError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    unsafe = [n for n in names if n.split(".")[0] not in _STAND_IN_PACKAGES]
    if unsafe:
        raise InputError(f"refusing to load {path}: its pickle names {', '.join(unsafe[:6])}, which could run "
                         "code, and loading never runs pickled code. Use the Hugging Face format instead "
                         "(e.g. `hf download facebook/wav2vec2-xls-r-300m --local-dir DIR`, then point "
                         "model_config.ssl_pretrained at DIR)")
    return safe_torch_load(path, [(_StandIn, n) for n in names])


def _check_state_dict(state_dict: Any, source: str) -> None:
    from ..loading import check_state_dict  # here: models.loading imports this module's users
    check_state_dict(state_dict, source)
