"""Robust accuracy as a cascade of attacks, each run only on the points still correct.

As in AutoAttack (Croce & Hein, ICML 2020, https://arxiv.org/abs/2003.01690): an example
counts as robust only if every attack fails on it, later (usually costlier) attacks see only
the survivors, and the robust accuracy after each attack is kept — a large drop at a weak
attack or none at a strong one is itself evidence (see :mod:`attacks.sanity`).

Example::

    result = cascade(model, x, y, [("pgd", PGD(eps=0.1)), ("square", Square(eps=0.1))])
    result.steps  # [("pgd", 0.41), ("square", 0.40)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ._common import check_int, eval_mode, model_device

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class CascadeResult:
    """Accuracies as fractions in [0, 1]; ``correct`` is per example after all attacks."""

    clean_acc: float
    steps: list[tuple[str, float]]
    robust_acc: float
    robust_per_class: list[float]
    correct: torch.Tensor


def _predict_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     device: torch.device) -> tuple[torch.Tensor, int]:
    with torch.no_grad():
        logits = model(x.to(device))
    return (logits.argmax(1) == y.to(device)).cpu(), int(logits.shape[1])


def cascade(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            attacks: Sequence[tuple[str, Attack]], *, batch_size: int = 500) -> CascadeResult:
    """Run ``attacks`` in order on the still-correct points, in batches of ``batch_size``.

    The model is in eval mode throughout and its modes are restored afterwards. ``x`` and
    ``y`` may live on the CPU; each batch moves to the model's device.
    """
    check_int("batch_size", batch_size, low=1)
    device = model_device(model, x.device)
    correct = torch.zeros(len(y), dtype=torch.bool)
    num_classes = 0
    with eval_mode(model):
        for chunk in torch.arange(len(y)).split(batch_size):
            correct[chunk], num_classes = _predict_correct(model, x[chunk], y[chunk], device)
        clean_acc = correct.float().mean().item()
        steps: list[tuple[str, float]] = []
        for name, attack in attacks:
            for chunk in correct.nonzero().flatten().split(batch_size):
                xb, yb = x[chunk].to(device), y[chunk].to(device)
                x_adv = attack(model, xb, yb)
                if x_adv.shape != xb.shape:
                    raise ValueError(f"attack {name!r} returned shape {tuple(x_adv.shape)}, "
                                     f"expected {tuple(xb.shape)}")
                correct[chunk], _ = _predict_correct(model, x_adv, yb, device)
            steps.append((name, correct.float().mean().item()))
    labels = y.cpu()
    per_class = [correct[labels == c].float().mean().item() for c in range(num_classes)]
    robust_acc = steps[-1][1] if steps else clean_acc
    return CascadeResult(clean_acc=clean_acc, steps=steps, robust_acc=robust_acc,
                         robust_per_class=per_class, correct=correct)
