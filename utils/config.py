"""Load and validate a run configuration, once, into frozen dataclasses.

A missing or unknown key, a value of the wrong type, or one out of its range (a negative learning
rate, NaN anywhere, an `nb_samp` too short for the encoder) is an `InputError` that names the key
(e.g. `optim_config.base_lr`), raised on load rather than an epoch into training. The published
repository's `AASIST.conf` / `AASIST-L.conf` load unchanged: their string booleans
(`"amsgrad": "False"`) become real booleans here and nowhere else.

The optional `augmentation` object (absent: none, and training is what it always was) is
`AugmentationConfig`; its `rawboost` object is `RawBoostParams` (used by data_utils/augmentation/rawboost.py).

`model_config` is validated by the config class of the architecture it names (`model_config.architecture`;
each model file holds its class, `models/registry.py` lists them): `check`, `check_len` and `check_each` below
are the checks those classes use, so that every message names its key the same way.
"""
import copy
import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from .errors import InputError

OPTIMIZERS = ("adam", "sgd")
SCHEDULERS = ("cosine", "multistep", "sgdr", "keras_decay", "none")
PRECISIONS = ("auto", "fp32", "bf16")
TRAIN_CROPS = ("random", "first")  # Config.train_crop
CLASS_WEIGHTS = (0.1, 0.9)  # spoof, bona fide: the published weighted cross-entropy
DEFAULT_NB_SAMP = 64600  # samples (~4 s at 16 kHz) the model takes: the published model_config's nb_samp


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The keys every model's config has. Each model file subclasses it with its own keys and checks, and
    `models/registry.py` maps `architecture` to that class; `model_config_from_dict` picks it."""
    architecture: str = "AASIST"
    nb_samp: int = DEFAULT_NB_SAMP        # samples a model is trained and scored on


_MODELS: dict = {}  # architecture -> (config class, module class): models/registry.py's table, once imported


def register_models(models: Mapping[str, tuple[type, type]]) -> None:
    """Called by models/registry.py with its table, so that configs are validated by each architecture's own
    config class (the model files import this module, not the other way round)."""
    _MODELS.update(models)


def _registry() -> dict:
    if not _MODELS:
        raise RuntimeError("no architectures are registered: import models (models/registry.py) before reading a "
                           "config")
    return _MODELS


def model_config_class(raw: Any) -> type:
    """The config class of the architecture a `model_config` mapping names (default "AASIST")."""
    models = _registry()
    name = raw.get("architecture", ModelConfig.architecture) if isinstance(raw, Mapping) else ModelConfig.architecture
    if name not in models:
        raise InputError(f"model_config.architecture must be one of {', '.join(models)}, got {name!r}")
    cls = models[name][0]
    if isinstance(raw, Mapping):  # a key of another architecture's: say whose, not just "unknown"
        own = {f.name for f in dataclasses.fields(cls)}
        for key in raw:
            owners = [other for other, (c, _) in models.items() if key in {f.name for f in dataclasses.fields(c)}]
            if key not in own and owners:
                raise InputError(f"model_config.{key} must be left out for {name} (a key of {', '.join(owners)})")
    return cls


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule (the published recipes' `optim_config`). Schedule-specific keys
    are checked only when that schedule is chosen."""
    optimizer: str
    base_lr: float
    scheduler: str = "none"
    lr_min: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    amsgrad: bool = False
    momentum: float = 0.0
    nesterov: bool = False
    milestones: Optional[list[int]] = None  # multistep, in epochs
    lr_decay: Optional[float] = None        # multistep
    T0: Optional[int] = None                # sgdr, in epochs
    Tmult: Optional[int] = None             # sgdr

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"optim_config.optimizer: unknown optimiser {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.scheduler not in SCHEDULERS:
            raise InputError(f"optim_config.scheduler: unknown schedule {self.scheduler!r}; valid: {', '.join(SCHEDULERS)}")
        needed = {"multistep": ("milestones", "lr_decay"), "sgdr": ("T0", "Tmult")}.get(self.scheduler, ())
        for key in needed:
            if getattr(self, key) is None:
                raise InputError(f"optim_config.{key} is required by the {self.scheduler!r} schedule")
        _check_len(self.betas, 2, "optim_config.betas")
        _check_each(self.betas, lambda v: 0 <= v < 1, "optim_config.betas", "in [0, 1)")
        _check(self.base_lr > 0, "optim_config.base_lr", "positive", self.base_lr)
        for key in ("lr_min", "weight_decay", "momentum"):
            _check(getattr(self, key) >= 0, f"optim_config.{key}", "non-negative", getattr(self, key))
        if self.optimizer == "sgd" and self.nesterov:  # torch's SGD refuses Nesterov without momentum
            _check(self.momentum > 0, "optim_config.momentum", "positive with nesterov", self.momentum)
        m = self.milestones
        if m is not None:
            _check(all(v > 0 for v in m) and all(a < b for a, b in zip(m, m[1:])), "optim_config.milestones",
                   "increasing positive epochs", m)
        if self.lr_decay is not None:
            _check(self.lr_decay > 0, "optim_config.lr_decay", "positive", self.lr_decay)
        for key in ("T0", "Tmult"):
            if getattr(self, key) is not None:
                _check(getattr(self, key) >= 1, f"optim_config.{key}", "at least 1", getattr(self, key))


RAWBOOST_ALGORITHMS = {  # data_utils/augmentation/rawboost.py
    0: "none",
    1: "LnL convolutive noise",
    2: "ISD impulsive noise",
    3: "SSI coloured additive noise",
    4: "LnL -> ISD -> SSI",
    5: "LnL -> ISD",
    6: "LnL -> SSI",
    7: "ISD -> SSI",
    8: "LnL + ISD in parallel",
}


@dataclass(frozen=True)
class RawBoostParams:
    """RawBoost's parameters, with the published names and defaults (RawBoost-antispoofing ``main.py``).

    Frequencies in Hz, gains in dB, filter lengths in taps, ``P`` in percent of the samples.
    """

    # LnL convolutive noise
    N_f: int = 5                    # number of signal powers x, x^2, ..., x^N_f summed
    nBands: int = 5                 # notch bands per filter (LnL and SSI)
    minF: float = 20                # band centre frequency range, Hz
    maxF: float = 8000
    minBW: float = 100              # band width range, Hz
    maxBW: float = 1000
    minCoeff: int = 10              # FIR length range per band, taps (made odd)
    maxCoeff: int = 100
    minG: float = 0                 # filter gain range, dB
    maxG: float = 0
    minBiasLinNonLin: float = 5     # subtracted from minG / maxG for the powers x^2 ... x^N_f, dB
    maxBiasLinNonLin: float = 20
    # ISD impulsive noise
    P: float = 10                   # at most P percent of the samples are disturbed
    g_sd: float = 2                 # gain of the disturbance
    # SSI coloured additive noise
    SNRmin: float = 10              # SNR range, dB
    SNRmax: float = 40

    def __post_init__(self):
        for f in dataclasses.fields(self):  # from_dict has checked these; RawBoostParams(...) in Python has not
            _coerce(getattr(self, f.name), f.type, f"rawboost.{f.name}")
        _check_rawboost(self.N_f >= 1, "N_f", "at least 1", self.N_f)
        _check_rawboost(self.nBands >= 1, "nBands", "at least 1", self.nBands)
        _check_rawboost(0 < self.minF <= self.maxF, "minF", "positive and at most maxF", self.minF)
        _check_rawboost(0 < self.minBW <= self.maxBW, "minBW", "positive and at most maxBW", self.minBW)
        _check_rawboost(1 <= self.minCoeff <= self.maxCoeff, "minCoeff", "at least 1 and at most maxCoeff", self.minCoeff)
        _check_rawboost(0 <= self.P <= 100, "P", "a percentage in [0, 100]", self.P)
        _check_rawboost(self.g_sd >= 0, "g_sd", "non-negative", self.g_sd)
        _check_rawboost(self.SNRmin <= self.SNRmax, "SNRmin", "at most SNRmax", self.SNRmin)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "RawBoostParams":
        """Build from a config dict; keys left out keep their defaults, unknown keys are an ``InputError``."""
        return dataclass_from_dict(cls, dict(raw) if isinstance(raw, Mapping) else raw, prefix="rawboost.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_rawboost(ok: bool, key: str, rule: str, value) -> None:
    if not ok:
        raise InputError(f"rawboost.{key} must be {rule}, got {value!r}")


@dataclass(frozen=True)
class Codec:
    """A lossy codec of the codec augmentation (data_utils/augmentation/augmenter.py), as libsndfile names it."""
    name: str                              # the name a config gives
    format: str                            # libsndfile's container format
    subtype: str                           # and its encoding


CODECS = {c.name: c for c in (Codec("mp3", "MP3", "MPEG_LAYER_III"), Codec("vorbis", "OGG", "VORBIS"),
                              Codec("opus", "OGG", "OPUS"))}


@dataclass(frozen=True)
class AugmentationConfig:
    """Training-data augmentation (data_utils/augmentation/augmenter.py): RawBoost, then with probability `codec_prob`
    a lossy codec, applied to the whole training utterance before the crop; never to dev or eval.

    `codec_compression` is the range of libsndfile's compression level, drawn uniformly per utterance:
    0 is the highest quality (largest file), 1 the lowest; each codec maps it to its own bitrates.
    """
    rawboost_algo: int = 0                 # 0 none; 1-8 the published algorithms (LA: 5, DF: 3)
    rawboost: RawBoostParams = field(default_factory=RawBoostParams)  # the published defaults
    codec_prob: float = 0.0
    codecs: list[str] = field(default_factory=lambda: list(CODECS))
    codec_compression: list[float] = field(default_factory=lambda: [0.1, 0.9])

    def __post_init__(self):
        hints = typing.get_type_hints(AugmentationConfig)
        for f in dataclasses.fields(self):  # from_dict has checked these; AugmentationConfig(...) in Python has not
            if f.name != "rawboost":
                _coerce(getattr(self, f.name), hints[f.name], f"augmentation.{f.name}")
        _check(isinstance(self.rawboost, RawBoostParams), "augmentation.rawboost", "RawBoostParams", self.rawboost)
        if self.rawboost_algo not in RAWBOOST_ALGORITHMS:
            raise InputError("augmentation.rawboost_algo must be one of "
                             + ", ".join(f"{k} ({v})" for k, v in RAWBOOST_ALGORITHMS.items())
                             + f"; got {self.rawboost_algo!r}")
        _check(0 <= self.codec_prob <= 1, "augmentation.codec_prob", "a probability in [0, 1]", self.codec_prob)
        for i, codec in enumerate(self.codecs):
            _check(codec in CODECS, f"augmentation.codecs[{i}]", f"one of {', '.join(CODECS)}", codec)
        _check(len(set(self.codecs)) == len(self.codecs), "augmentation.codecs", "without repeats", self.codecs)
        if self.codec_prob > 0:
            _check(len(self.codecs) > 0, "augmentation.codecs", "non-empty when codec_prob > 0", self.codecs)
        _check_len(self.codec_compression, 2, "augmentation.codec_compression")
        low, high = self.codec_compression
        _check(0 <= low <= high <= 1, "augmentation.codec_compression", "[low, high] with 0 <= low <= high <= 1",
               self.codec_compression)

    @property
    def active(self) -> bool:
        """Whether it changes anything: without RawBoost and codecs, training reads exactly as without it."""
        return self.rawboost_algo != 0 or self.codec_prob > 0


@dataclass(frozen=True)
class Config:
    """A whole run: data, model, optimiser, training and scoring settings."""
    database_path: str
    batch_size: int
    num_epochs: int
    model_config: ModelConfig
    optim_config: OptimConfig
    model_path: str = ""
    # ASV score files, relative to database_path, for min t-DCF on each set.
    asv_score_path: str = "ASVspoof2019_LA_asv_scores/ASVspoof2019.LA.asv.eval.gi.trl.scores.txt"
    dev_asv_score_path: str = "ASVspoof2019_LA_asv_scores/ASVspoof2019.LA.asv.dev.gi.trl.scores.txt"
    loss: str = "CCE"
    track: str = "LA"
    corpus: str = "asvspoof2019_la"        # of train, dev and eval: asvspoof2019_la or asvspoof5
    freq_aug: bool = False
    eval_all_best: bool = True
    eval_output: str = "eval_scores_using_best_dev_model.txt"
    cudnn_deterministic_toggle: bool = True
    cudnn_benchmark_toggle: bool = False
    swa_max_dev_eer: float = 1.0           # percent; the published run's gate for weight averaging
    eval_batch_size: Optional[int] = None  # None: the training batch size
    num_workers: Optional[int] = None      # None: min(8, CPU count)
    pin_memory: bool = True                # used on CUDA only
    # Speed (see README, Performance). "auto": bf16 autocast for training on CUDA, fp32 elsewhere;
    # evaluate.py scores in fp32 unless told otherwise. compile None: torch.compile for training on
    # CUDA (evaluate.py compiles only when it is true or given --compile).
    precision: str = "auto"
    compile: Optional[bool] = None
    channels_last: Optional[bool] = None   # None: channels-last layout on CUDA in bf16
    cuda_graphs: Optional[bool] = None     # None: compiled graphs replayed as CUDA graphs on one GPU, not DDP
    gradient_checkpointing: bool = False   # models that support it (XLS-R front ends): recompute layers in the backward pass
    augmentation: Optional[AugmentationConfig] = None  # training data only; None: no augmentation
    # The published RawNet2_baseline.conf repeats optim_config's base_lr and weight_decay here; its training
    # reads optim_config alone. Accepted so that the file loads unchanged, and they must agree with it.
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    # The training input, part of the recipe: "random", a uniformly random window of nb_samp samples (AASIST's
    # published loader); "first", the first nb_samp samples after augmentation, repeat-padded when shorter
    # (SSL-AASIST's published data_utils_SSL.Dataset_ASVspoof2019_train, pad(x, 64600)).
    train_crop: str = "random"

    def scoring_batch_size(self) -> int:
        """The batch dev, eval and other sets are scored in: `eval_batch_size`, else the training batch."""
        return self.eval_batch_size or self.batch_size

    def loader_workers(self) -> int:
        """`num_workers`, or by default one per CPU core up to 8 (a worker reads about 1,000 files/s:
        scoring on a GPU at about 3,000 utterances/s needs 3 or 4)."""
        return self.num_workers if self.num_workers is not None else min(8, os.cpu_count() or 1)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise InputError(f"precision: unknown value {self.precision!r}; valid: {', '.join(PRECISIONS)}")
        if self.loss != "CCE":
            raise InputError(f"loss: only 'CCE' (weighted cross-entropy) is implemented, got {self.loss!r}")
        if self.track != "LA":
            raise InputError(f"track: only 'LA' (ASVspoof 2019 logical access) is implemented, got {self.track!r}")
        for key in ("batch_size", "num_epochs"):
            _check(getattr(self, key) > 0, key, "positive", getattr(self, key))
        _check(self.train_crop in TRAIN_CROPS, "train_crop", " or ".join(map(repr, TRAIN_CROPS)), self.train_crop)
        if self.eval_batch_size is not None:
            _check(self.eval_batch_size > 0, "eval_batch_size", "positive", self.eval_batch_size)
        if self.num_workers is not None:
            _check(self.num_workers >= 0, "num_workers", "non-negative (0: load in the main process)", self.num_workers)
        _check(0 <= self.swa_max_dev_eer <= 100, "swa_max_dev_eer", "a percentage in [0, 100]", self.swa_max_dev_eer)
        for key, used in (("lr", "base_lr"), ("weight_decay", "weight_decay")):
            value = getattr(self, key)
            _check(value is None or value == getattr(self.optim_config, used), key,
                   f"left out or equal to optim_config.{used} ({getattr(self.optim_config, used)!r}), "
                   f"which is what trains", value)
        name = self.model_config.architecture
        model = _registry()[name][1]
        if self.freq_aug:
            _check(model.supports_freq_aug, "freq_aug",
                   f"false for {name} (its published model does not mask frequencies)", True)
        if self.gradient_checkpointing:
            _check(model.supports_gradient_checkpointing(), "gradient_checkpointing",
                   f"false for {name} (it has no layers to recompute)", True)


def load_config(path: str | Path) -> Config:
    """Read a JSON config file and validate it; errors name the file and the key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark (Windows editors) is dropped
    except OSError as e:
        raise InputError(f"cannot read config {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); a config is a UTF-8 JSON file") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from None
    except (ValueError, RecursionError) as e:  # an integer of over 4300 digits; arrays nested too deep
        raise InputError(f"{path}: not a usable JSON config ({type(e).__name__}: {e})") from None
    try:
        return config_from_dict(raw)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def config_from_dict(raw: Any) -> Config:
    return dataclass_from_dict(Config, raw)


def model_config_from_dict(raw: Any) -> ModelConfig:
    """A validated config of the architecture a config's `model_config` mapping names."""
    raw = dict(raw) if isinstance(raw, Mapping) else raw
    return dataclass_from_dict(model_config_class(raw), raw, prefix="model_config.")


def config_to_dict(config: Config) -> dict:
    """Plain JSON-ready dict (the resolved config written next to a run's weights)."""
    return dataclasses.asdict(config)


# --- validation ------------------------------------------------------------------------------

def _nested_class(hint):
    """The dataclass a field holds (through Optional), or None for a plain value."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint if dataclasses.is_dataclass(hint) else None


def dataclass_from_dict(cls, raw: Any, prefix: str = "", root: str = "config"):
    """`cls`, a dataclass, from a JSON object: fields left out keep their defaults, nested dataclasses are
    built in turn, values are checked and converted by `_coerce`. An error is an `InputError` that names the key,
    `prefix` + field (`root` for the object itself when `prefix` is empty)."""
    where = prefix.rstrip(".") or root
    if not isinstance(raw, dict):
        raise InputError(f"{where} must be a JSON object, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise InputError(f"unknown key(s) {', '.join(prefix + k for k in unknown)}; "
                         f"valid keys in {where}: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise InputError(f"missing key {key}")
            continue
        nested = _nested_class(hints[name])
        if nested is ModelConfig:
            values[name] = model_config_from_dict(raw[name])
        elif nested is not None:
            optional = hints[name] is not nested
            value = _preset(nested, raw[name], key)
            if value is None and not optional:  # `"ssl": null` where an object is required
                raise InputError(f"missing key {key}")
            values[name] = None if optional and value is None else dataclass_from_dict(nested, value, prefix=key + ".")
        else:
            values[name] = _coerce(raw[name], hints[name], key)
    return cls(**values)


def _preset(cls, value: Any, key: str) -> Any:
    """A nested object's value, or for a class with `PRESETS`, the values a preset name stands for."""
    presets = getattr(cls, "PRESETS", None)
    if presets is None or not isinstance(value, str):
        return value
    if value not in presets:
        raise InputError(f"{key}: unknown preset {value!r}; valid: {', '.join(presets)} (or an object of sizes)")
    return copy.deepcopy(presets[value])


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_len(value: list, n: int, key: str) -> None:
    if len(value) != n:
        raise InputError(f"{key} must have {n} entries, got {len(value)}")


def check(ok: bool, key: str, rule: str, value) -> None:
    if not ok:
        raise InputError(f"{key} must be {rule}, got {value!r}")


def check_each(values: list, ok, key: str, rule: str) -> None:
    for i, v in enumerate(values):
        _check(ok(v), f"{key}[{i}]", rule, v)


_is_int, _check, _check_len, _check_each = is_int, check, check_len, check_each


def _coerce(value: Any, hint, key: str):
    """Check `value` against a type hint; return it converted (string booleans, ints as floats)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        if value is None:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), key)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if value in ("True", "False", "true", "false"):
            return value.lower() == "true"
    elif hint is int:
        if _is_int(value):
            return value
    elif hint is float:
        if _is_int(value) or isinstance(value, float):
            try:
                number = float(value)
            except OverflowError:  # an int beyond a float's range
                number = math.inf
            if not math.isfinite(number):  # Python's json reads NaN, Infinity and 1e999
                raise InputError(f"{key} must be a finite number, got {number!r}")
            return number
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is list or origin is list:
        if isinstance(value, list):
            return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)] if args else value
    else:
        raise TypeError(f"no validator for {hint}")
    name = getattr(hint, "__name__", str(hint))
    raise InputError(f"{key} must be {'a list' if origin is list else name}, got {value!r}")
