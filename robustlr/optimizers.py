"""Optimizers, built from the train config; the schedule multiplies each group's base LR.

The trainer writes ``group["lr"] = group["base_lr"] * multiplier`` before every step, so a
group's own scale (none today, but e.g. no-decay groups) survives scheduling.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import schedulefree
import torch


class OptimizerSettings(Protocol):
    optimizer: str
    momentum: float
    nesterov: bool
    weight_decay: float
    betas: tuple[float, float]


OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


def build(settings: OptimizerSettings, parameters: Iterable[torch.nn.Parameter], *, lr: float,
          schedule_free_warmup_steps: int | None = None) -> torch.optim.Optimizer:
    """The configured optimizer at base LR ``lr``.

    ``schedule_free_warmup_steps`` set (a ``schedule_free`` schedule) swaps SGD for
    ``SGDScheduleFree`` and Adam/AdamW for ``AdamWScheduleFree`` (Defazio et al. 2024);
    those must be switched to their evaluation weights whenever the model is evaluated.
    """
    params = list(parameters)
    name = settings.optimizer
    if schedule_free_warmup_steps is not None:
        optimizer = _schedule_free(settings, params, lr=lr, warmup=schedule_free_warmup_steps)
    elif name == "sgd":
        optimizer = torch.optim.SGD(params, lr=lr, momentum=settings.momentum,
                                    nesterov=settings.nesterov and settings.momentum > 0,
                                    weight_decay=settings.weight_decay)
    elif name == "adam":
        optimizer = torch.optim.Adam(params, lr=lr, betas=settings.betas,
                                     weight_decay=settings.weight_decay)
    elif name == "adamw":
        optimizer = torch.optim.AdamW(params, lr=lr, betas=settings.betas,
                                      weight_decay=settings.weight_decay)
    elif name == "rmsprop":
        optimizer = torch.optim.RMSprop(params, lr=lr, momentum=settings.momentum,
                                        weight_decay=settings.weight_decay)
    else:
        raise ValueError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    return optimizer


def _schedule_free(settings: OptimizerSettings, params: list, *, lr: float,
                   warmup: int) -> torch.optim.Optimizer:
    if settings.optimizer == "sgd":
        return schedulefree.SGDScheduleFree(params, lr=lr, momentum=settings.momentum or 0.9,
                                            weight_decay=settings.weight_decay,
                                            warmup_steps=warmup)
    if settings.optimizer in ("adam", "adamw"):
        return schedulefree.AdamWScheduleFree(params, lr=lr, betas=settings.betas,
                                              weight_decay=settings.weight_decay,
                                              warmup_steps=warmup)
    raise ValueError("schedule 'schedule_free' needs train.optimizer sgd, adam or adamw, "
                     f"got {settings.optimizer!r}")


def is_schedule_free(optimizer: torch.optim.Optimizer) -> bool:
    """True for schedulefree optimizers, also when wrapped (Opacus keeps the original)."""
    inner = getattr(optimizer, "original_optimizer", optimizer)
    return hasattr(inner, "eval") and hasattr(inner, "train") and "ScheduleFree" in type(inner).__name__


def set_lr(optimizer: torch.optim.Optimizer, multiplier: float) -> float:
    """Scale every group's base LR by ``multiplier``; return the first group's LR."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * multiplier
    return optimizer.param_groups[0]["lr"]
