"""The one place where modes are switched for evaluation and attack generation.

Three switches must move together, or results are silently wrong: the model's train/eval
mode (BatchNorm statistics, dropout), schedule-free optimizers' evaluation weights
(otherwise the model is evaluated at the wrong point), and Opacus' per-sample-gradient
hooks (otherwise an input-gradient attack crashes or fills ``grad_sample``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from robustlr.optimizers import is_schedule_free

if TYPE_CHECKING:  # regimes import this module to switch modes while attacking
    from robustlr.regimes.base import Regime


def _set_optimizer_mode(optimizer: torch.optim.Optimizer | None, train: bool) -> None:
    if optimizer is not None and is_schedule_free(optimizer):
        inner: Any = getattr(optimizer, "original_optimizer", optimizer)
        inner.train() if train else inner.eval()


def training(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Model in train mode and a schedule-free optimizer at its training point."""
    model.train()
    _set_optimizer_mode(optimizer, train=True)


@contextlib.contextmanager
def evaluating(model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
               regime: Regime | None = None) -> Iterator[None]:
    """Model in eval mode, schedule-free evaluation weights, DP hooks off; restored after."""
    was_training = model.training
    model.eval()
    _set_optimizer_mode(optimizer, train=False)
    hooks = regime.attack_mode(model) if regime is not None else contextlib.nullcontext()
    try:
        with hooks:
            yield
    finally:
        _set_optimizer_mode(optimizer, train=True)
        model.train(was_training)


@contextlib.contextmanager
def generating_attack(model: nn.Module, regime: Regime) -> Iterator[None]:
    """During adversarial training: eval mode (BatchNorm statistics untouched) and DP hooks
    off while the attack runs; the schedule-free optimizer stays at its training point,
    since the attack must target the weights being trained."""
    was_training = model.training
    model.eval()
    try:
        with regime.attack_mode(model):
            yield
    finally:
        model.train(was_training)
