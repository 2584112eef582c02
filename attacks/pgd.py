"""Projected gradient descent (PGD), the training-time hot path.

Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018,
https://arxiv.org/abs/1706.06083. Restarts keep the worst case per example as in
Rice et al., "Overfitting in adversarially robust deep learning", ICML 2020.

Inputs are in [0, 1] with shape (N, ...); the model returns logits (N, C). Example::

    x_adv = PGD(eps=8 / 255, steps=10)(model, x, y)          # evaluation: eval mode inside
    x_adv = pgd(model, x, y, eps=8 / 255, step_size=2 / 255, steps=7)  # training: caller's mode
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._common import (
    NORMS,
    check_choice,
    check_int,
    check_number,
    check_optional_number,
    eval_mode,
    flat_norm,
    fooled,
    generator_for,
    project,
)
from ._common import random_start as draw_start
from .contracts import EVASION_ATTACKS


def default_step_size(*, eps: float, steps: int) -> float:
    """PGD's step size when none is given: 2.5 eps / steps (Madry et al. 2018, appendix),
    so that ``steps`` steps can cross the eps-ball and back from a random start."""
    return 2.5 * eps / steps


def _validate(*, eps: float, step_size: float | None, steps: int, norm: str, restarts: int) -> None:
    check_number("eps", eps)
    check_optional_number("step_size", step_size)
    check_int("steps", steps)
    check_int("restarts", restarts, low=1)
    check_choice("norm", norm, NORMS)


def _one_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, step_size: float,
             steps: int, norm: str, start: bool, start_in_box: bool, targeted: bool,
             early_stop: bool, generator: torch.Generator | None) -> torch.Tensor:
    x_adv = draw_start(x, eps, norm, generator, in_box=start_in_box) if start else x.clone()
    shape = (-1,) + (1,) * (x.dim() - 1)
    for _ in range(steps):
        # The gradient is taken at the already-clipped point: clamping inside the forward
        # pass would zero it for coordinates sitting outside the box.
        x_adv.requires_grad_(True)
        logits = model(x_adv)
        loss = F.cross_entropy(logits, y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)  # input gradient only, no weight grads
        with torch.no_grad():
            if norm == "linf":
                direction = grad.sign()
            else:
                direction = grad / flat_norm(grad).clamp_min(1e-12)
            if targeted:  # descend the loss of the target class
                direction = direction.neg_()
            if early_stop:  # freeze examples already fooled at the current point
                active = ~fooled(logits, y, targeted)
                if not active.any():
                    break
                direction = direction * active.view(shape).to(direction.dtype)
            # Same order as ART (step, clip to the box, project onto the ball): the result
            # stays in both sets because the box is convex and contains x.
            x_adv = (x_adv.detach() + step_size * direction).clamp_(0.0, 1.0)
            x_adv = (x + project(x_adv - x, eps, norm)).clamp_(0.0, 1.0)
    return x_adv.detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, step_size: float,
        steps: int, norm: str = "linf", random_start: bool = True, restarts: int = 1,
        targeted: bool = False, early_stop: bool = False,
        generator: torch.Generator | None = None, start_in_box: bool = True) -> torch.Tensor:
    """PGD under an L-inf or L2 budget; returns adversarial inputs in [0, 1].

    Does not change the model's train/eval mode (the caller controls it). ``y`` holds true
    labels, or target labels when ``targeted``. ``generator`` seeds the random start and may
    live on the model's device or on the CPU. With ``restarts > 1`` each example keeps the
    first point that fools the model, else the point of highest loss. ``start_in_box=False``
    takes the first gradient at the random start before it is clipped into [0, 1]
    (Wong et al.'s MNIST FGSM); the returned points are in the box either way.
    """
    _validate(eps=eps, step_size=step_size, steps=steps, norm=norm, restarts=restarts)
    x, y = x.detach(), y.detach()
    if eps == 0 or x.shape[0] == 0:
        return x.clone()
    run: dict[str, Any] = dict(eps=eps, step_size=step_size, steps=steps, norm=norm, start=random_start,
                               start_in_box=start_in_box, targeted=targeted,
                               early_stop=early_stop, generator=generator)
    with torch.enable_grad():  # callers often evaluate under no_grad
        if restarts == 1:
            return _one_run(model, x, y, **run)
        best = x.clone()
        best_loss = torch.full((x.shape[0],), -float("inf"), device=x.device)
        done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(restarts):
            candidate = _one_run(model, x, y, **run)
            with torch.no_grad():
                logits = model(candidate)
                loss = F.cross_entropy(logits, y, reduction="none")
                loss = -loss if targeted else loss
                success = fooled(logits, y, targeted)
            better = ~done & (success | (loss > best_loss))
            best[better] = candidate[better]
            best_loss = torch.where(better, loss, best_loss)
            done |= success
            if bool(done.all()):
                break
    return best


@EVASION_ATTACKS.register("pgd")
@dataclass(frozen=True, kw_only=True)
class PGD:
    """PGD for evaluation: eval mode during the attack, the previous modes restored after.

    ``step_size`` defaults to 2.5 * eps / steps (Madry et al.); ``seed`` makes the random
    start reproducible.
    """

    eps: float = 0.1
    steps: int = 20
    step_size: float | None = None
    restarts: int = 1
    norm: str = "linf"
    random_start: bool = True
    targeted: bool = False
    early_stop: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        _validate(eps=self.eps, step_size=self.step_size, steps=self.steps, norm=self.norm,
                  restarts=self.restarts)
        check_int("steps", self.steps, low=1)
        check_int("seed", self.seed)

    @property
    def alpha(self) -> float:
        """The step size actually used."""
        if self.step_size is None:
            return default_step_size(eps=self.eps, steps=self.steps)
        return self.step_size

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with eval_mode(model):
            return pgd(model, x, y, eps=self.eps, step_size=self.alpha, steps=self.steps,
                       norm=self.norm, random_start=self.random_start, restarts=self.restarts,
                       targeted=self.targeted, early_stop=self.early_stop,
                       generator=generator_for(self.seed, x.device))
