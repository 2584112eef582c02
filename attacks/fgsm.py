"""Fast gradient sign method (FGSM) and its random-start variant FGSM-RS.

Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015,
https://arxiv.org/abs/1412.6572. FGSM-RS (``random_start=True``, ``step_size=1.25 * eps``):
Wong et al., "Fast is better than free: Revisiting adversarial training", ICLR 2020,
https://arxiv.org/abs/2001.03994.

L-inf only. Inputs in [0, 1], the model returns logits (N, C). Example::

    x_adv = fgsm(model, x, y, eps=8 / 255, step_size=10 / 255, random_start=True)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._common import check_int, check_number, check_optional_number, eval_mode, generator_for
from .contracts import EVASION_ATTACKS
from .pgd import pgd


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
         step_size: float | None = None, random_start: bool = False, targeted: bool = False,
         generator: torch.Generator | None = None, start_in_box: bool = True) -> torch.Tensor:
    """One signed-gradient step of ``step_size`` (default ``eps``), projected onto the ball.

    ``start_in_box=False`` takes the gradient at the random start before clipping it into
    [0, 1], as Wong et al.'s MNIST code does. Does not change the model's train/eval mode.
    FGSM is PGD with one step, so it shares PGD's gradient, clipping and projection code
    rather than repeating it.
    """
    check_number("eps", eps)
    check_optional_number("step_size", step_size)
    return pgd(model, x, y, eps=eps, step_size=eps if step_size is None else step_size,
               steps=1, norm="linf", random_start=random_start, targeted=targeted,
               generator=generator, start_in_box=start_in_box)


@EVASION_ATTACKS.register("fgsm")
@dataclass(frozen=True, kw_only=True)
class FGSM:
    """FGSM for evaluation: eval mode during the attack, the previous modes restored after."""

    eps: float
    random_start: bool = False
    step_size: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_number("eps", self.eps)
        check_optional_number("step_size", self.step_size)
        check_int("seed", self.seed)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with eval_mode(model):
            return fgsm(model, x, y, eps=self.eps, step_size=self.step_size,
                        random_start=self.random_start,
                        generator=generator_for(self.seed, x.device))
