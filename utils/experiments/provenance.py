"""What produced a run's numbers: `<run>/run_info.json`, written by scripts/train.py.

    {"seed": 7, "config_name": "config", "config_sha256": "...",
     "sessions": [{"started": ..., "git_commit": ..., "git_dirty": false, "python": ..., "torch": ...,
                   "cuda": ..., "cudnn": ..., "numpy": ..., "device": "NVIDIA H200", "processes": 1,
                   "precision": "bf16", "channels_last": true, "compile": true, "cuda_graphs": true}, ...],
     "finished": "2026-12-01T12:00:00+00:00" | null}

One session per start or resume of the run, so a run resumed on another machine says so. The resolved
config itself is `<run>/config.json`; its hash is over the canonical JSON of its non-default values, so two
runs of one config share it whatever the seed. scripts/report.py groups runs by it and warns when runs it
averages differ in any session field.
"""
import dataclasses
import datetime
import hashlib
import json
import platform
import re
import subprocess
from pathlib import Path

import numpy as np
import torch

from utils.config import Config
from utils.errors import InputError
from utils.io import atomic_write_json, printable_path, read_json

RUN_INFO = "run_info.json"
REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS = ("best", "swa")  # weights/<model>.pth: the best-dev model and the weight average
# The session fields that may change a number; report.py warns when averaged runs differ in one.
COMPARED = ("git_commit", "git_dirty", "python", "torch", "cuda", "cudnn", "numpy", "device", "processes",
            "precision", "channels_last", "compile", "cuda_graphs", "gradient_checkpointing")


def config_sha256(config: Config) -> str:
    """Hash of the resolved config's values that differ from the defaults (sorted keys, no whitespace): equal
    configs, equal hashes, also across versions of this code that add a key with a default."""
    text = json.dumps(non_default_values(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def non_default_values(obj) -> dict:
    """The fields of a config dataclass that differ from their defaults (required fields always), nested."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if value != default:
            out[f.name] = non_default_values(value) if dataclasses.is_dataclass(value) else value
    return out


def session_record(device: torch.device, speed, processes: int) -> dict:
    """The code, software, hardware and speed settings of this process, for one session of a run."""
    commit, dirty = _git_state()
    return {
        "started": _now(),
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "numpy": np.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "processes": processes,
        "precision": speed.precision,
        "channels_last": speed.channels_last,
        "compile": speed.compile,
        "cuda_graphs": speed.cuda_graphs,
        "gradient_checkpointing": speed.gradient_checkpointing,
    }


def record_session(run_dir: Path, config: Config, seed: int, session: dict, config_name: str | None,
                   fresh: bool) -> None:
    """Add a session to `run_dir`'s run_info.json, atomically. A `fresh` start (no checkpoint to resume)
    makes a new file: a run killed before its first checkpoint and started again with another seed or config
    must not keep the first start's record."""
    info = None if fresh else read_run_info(run_dir)
    info = info or {"seed": seed, "config_name": config_name or "config", "config_sha256": config_sha256(config),
                    "sessions": [], "finished": None}
    info["sessions"].append(session)
    _write(run_dir, info)


def mark_finished(run_dir: Path) -> None:
    """The run has trained every epoch and saved its weight average: a sweep need not touch it again."""
    info = read_run_info(run_dir)
    info["finished"] = _now()
    _write(run_dir, info)


def evaluation_file(run_dir: Path, model: str, corpus: str) -> Path:
    """Where a run's metrics of `model` (one of MODELS) on `corpus` go: scripts/sweep.py writes them,
    scripts/report.py reads them."""
    return Path(run_dir) / "evaluation" / f"{model}_{corpus}.json"


def read_run_info(run_dir: Path) -> dict | None:
    """`run_dir`'s run_info.json, checked; None if the run has none.

    Raises:
        InputError: naming the file and the key: not JSON, or a field of the wrong type (a damaged or
            hand-edited file), so that no report or sweep acts on it.
    """
    path = Path(run_dir) / RUN_INFO
    if not path.exists() and not path.is_symlink():
        return None
    info = read_json(path, "run record", expect=dict)
    shown = printable_path(path)
    for key, kinds, wanted in (("seed", (int,), "an integer"), ("config_name", (str,), "text"),
                               ("config_sha256", (str,), "a hex digest"), ("sessions", (list,), "a list"),
                               ("finished", (str, type(None)), "a time or null")):
        if key not in info:
            raise InputError(f"{shown}: no {key}; not a run record of scripts/train.py")
        if type(info[key]) not in kinds:
            raise InputError(f"{shown}: {key} must be {wanted}, got {json.dumps(info[key])[:40]}")
    if not re.fullmatch(r"[0-9a-f]{64}", info["config_sha256"]):
        raise InputError(f"{shown}: config_sha256 must be a sha256 hex digest, got {info['config_sha256'][:40]!r}")
    if not all(isinstance(s, dict) for s in info["sessions"]):
        raise InputError(f"{shown}: sessions must be a list of objects")
    return info


def _write(run_dir: Path, info: dict) -> None:
    atomic_write_json(Path(run_dir) / RUN_INFO, info)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _git_state() -> tuple[str | None, bool | None]:
    """HEAD's commit and whether tracked files differ from it; (None, None) outside a git checkout."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None, None
        changes = git("status", "--porcelain", "--untracked-files=no")
        return head.stdout.strip(), bool(changes.stdout.strip()) if changes.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None, None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
