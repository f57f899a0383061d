"""Optimisers and learning-rate schedules of the published recipes (clovaai/aasist `utils.py`: Adam or SGD;
cosine, multistep, SGDR and Keras-style decay).

`cosine` and `keras_decay` are stepped after every optimiser step; `multistep` and `sgdr` count
epochs (their milestones and periods are in epochs), so the training loop steps them once per
epoch. `scheduler_interval()` says which.
"""
import math
from typing import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, MultiStepLR

from utils.config import OptimConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.base_lr, betas=tuple(cfg.betas),
                                weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.base_lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    raise ValueError(f"unknown optimiser {cfg.optimizer!r}")  # OptimConfig already refuses these


def cosine_factor(step: int, total_steps: int, min_factor: float) -> float:
    """Cosine annealing from 1 at step 0 to `min_factor` at `total_steps` (multiplies base_lr)."""
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(step / total_steps * math.pi))


def keras_decay_factor(step: int, decay: float = 1e-4) -> float:
    return 1.0 / (1.0 + decay * step)


class _Cosine:
    """Picklable lr_lambda (a LambdaLR with a closure could not be checkpointed)."""

    def __init__(self, total_steps: int, min_factor: float):
        self.total_steps, self.min_factor = total_steps, min_factor

    def __call__(self, step: int) -> float:
        return cosine_factor(step, self.total_steps, self.min_factor)


class _SGDR:
    """Cosine annealing with warm restarts: periods T0, T0*Tmult, T0*Tmult^2, ... (in epochs)."""

    def __init__(self, base_lr: float, lr_min: float, t0: int, t_mult: int):
        self.min_factor, self.t0, self.t_mult = lr_min / base_lr, t0, t_mult

    def __call__(self, epoch: int) -> float:
        period, t = self.t0, epoch
        while t >= period:
            t -= period
            period *= self.t_mult
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * t / period))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, num_epochs: int,
                    steps_per_epoch: int) -> LRScheduler | None:
    if cfg.scheduler == "cosine":
        return LambdaLR(optimizer, _Cosine(num_epochs * steps_per_epoch, cfg.lr_min / cfg.base_lr))
    if cfg.scheduler == "keras_decay":
        return LambdaLR(optimizer, keras_decay_factor)
    if cfg.scheduler == "multistep":
        return MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.lr_decay)
    if cfg.scheduler == "sgdr":
        return LambdaLR(optimizer, _SGDR(cfg.base_lr, cfg.lr_min, cfg.T0, cfg.Tmult))
    return None


def scheduler_interval(cfg: OptimConfig) -> str:
    """'step' if the schedule advances per optimiser step, 'epoch' if per epoch."""
    return "epoch" if cfg.scheduler in ("multistep", "sgdr") else "step"
