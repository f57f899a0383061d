"""Checkpoint averaging: one weights file whose every tensor is the mean of the same tensor over N saved epochs
(Nes2Net's `--num_average_model`, `average_model` in Liu-Tianchi/Nes2Net_ASVspoof_ITW `main.py`; its tables
report "CKPT Avg. 3" and "5").

BatchNorm is handled as the published code handles it: its running statistics are averaged like every other
tensor, not estimated again, and its integer `num_batches_tracked` is the mean truncated to an integer (what
loading the published float mean into that integer buffer gives). The result loads like any weights file.
"""
import re
from pathlib import Path
from typing import Sequence

import torch

from utils.errors import InputError
from utils.io import printable_path

from .loading import load_state_dict

_EPOCH_FILE = re.compile(r"epoch_(\d+)_(-?[0-9.]+)\.pth")  # scripts/train.py: weights/epoch_<epoch>_<dev EER>.pth


def average_weights(paths: Sequence[str | Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the state dicts in `paths` (two or more, the same keys and shapes).

    Raises:
        InputError: naming the file and key that differ, or a file that is not weights (`load_state_dict`).
    """
    if len(paths) < 2:
        raise InputError(f"averaging needs at least two weights files, got {len(paths)}")
    first = load_state_dict(paths[0])
    total = dict(first)  # summed in each tensor's own dtype, in file order, as published
    for path in paths[1:]:
        other = load_state_dict(path)
        if other.keys() != first.keys():
            differ = sorted(set(other) ^ set(first))
            raise InputError(f"{printable_path(path)} and {printable_path(paths[0])} hold different tensors "
                             f"({', '.join(differ[:4])}{' ...' if len(differ) > 4 else ''}): not one model's epochs")
        for key, value in other.items():
            if (value.shape, value.dtype) != (first[key].shape, first[key].dtype):
                raise InputError(f"{printable_path(path)}: {key} is {tuple(value.shape)} {value.dtype}, "
                                 f"{tuple(first[key].shape)} {first[key].dtype} in {printable_path(paths[0])}")
            total[key] = total[key] + value
    return {k: (v / len(paths)).to(v.dtype) for k, v in total.items()}


def best_epochs(run_dir: str | Path, count: int) -> list[Path]:
    """The `count` weights files of a run's `weights/epoch_<epoch>_<dev EER>.pth` (the epochs that improved on
    dev) with the lowest dev EER, ties to the later epoch; oldest first."""
    found = []
    for path in (Path(run_dir) / "weights").glob("epoch_*.pth"):
        match = _EPOCH_FILE.fullmatch(path.name)
        if match:
            found.append((float(match.group(2)), -int(match.group(1)), path))
    if len(found) < count:
        raise InputError(f"{printable_path(run_dir)} has {len(found)} saved epochs (weights/epoch_*.pth), "
                         f"fewer than the {count} to average")
    chosen = sorted(found)[:count]
    return [path for _, _, path in sorted(chosen, key=lambda t: -t[1])]
