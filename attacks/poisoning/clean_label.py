"""Label-consistent (clean-label) backdoor: perturb target-class images, add the trigger,
keep their (correct) labels.

Turner, Tsipras & Madry, "Label-Consistent Backdoor Attacks", 2019,
https://arxiv.org/abs/1912.02771. An L-inf PGD perturbation against a model trained on clean
data makes the natural features of the chosen target-class images hard to use, so the network
leans on the trigger to fit them; the labels stay correct, which defeats label inspection.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..contracts import POISONS
from .badnets import PATTERNS, POSITIONS, stamp_patch
from .base import (
    PoisonedData,
    check_choice,
    check_class,
    check_inputs,
    check_int,
    check_number,
    check_rate,
    choose,
)


@POISONS.register("clean_label")
@dataclass(frozen=True)
class CleanLabel:
    """Clean-label backdoor; ``rate`` is the poisoned fraction of the whole training set, all
    of it taken from the target class. ``step_size`` None means 2.5 * eps / steps (Madry et
    al.). The trigger is a BadNets patch (``size``, ``position``, ``pattern``)."""

    rate: float
    target: int = 0
    eps: float = 0.1
    steps: int = 10
    step_size: float | None = None
    size: int = 3
    position: str = "bottom_right"
    pattern: str = "checker"

    def __post_init__(self) -> None:
        check_rate(self.rate)
        check_int("target", self.target, low=0)
        check_number("eps", self.eps, low=0.0, high=1.0)
        check_int("steps", self.steps, low=1)
        if self.step_size is not None:
            check_number("step_size", self.step_size, low=0.0, high=1.0)
        check_int("size", self.size, low=1)
        check_choice("position", self.position, POSITIONS)
        check_choice("pattern", self.pattern, PATTERNS)

    def apply_trigger(self, x: torch.Tensor) -> torch.Tensor:
        return stamp_patch(x, pattern=self.pattern, size=self.size, position=self.position)

    def poison(self, x: torch.Tensor, y: torch.Tensor, *, num_classes: int,
               generator: torch.Generator | None, model: torch.nn.Module | None = None,
               ) -> PoisonedData:
        """Poisoned copy of (x, y); ``model`` (trained on clean data) is required."""
        from ..pgd import default_step_size, pgd  # the evasion package is optional for the other poisons

        if model is None:
            raise ValueError("model must be given for clean_label (a model trained on clean data)")
        check_inputs(x, y)
        check_class("target", self.target, num_classes)
        indices = choose(y == self.target, self.rate, len(y), generator, "target-class examples")
        step_size = (self.step_size if self.step_size is not None
                     else default_step_size(eps=self.eps, steps=self.steps))
        device = next(model.parameters()).device
        adversarial = pgd(model, x[indices].to(device), y[indices].to(device), eps=self.eps,
                          step_size=step_size, steps=self.steps, generator=generator)
        x_out = x.clone()
        x_out[indices] = self.apply_trigger(adversarial.detach().to(x.device, x.dtype))
        return PoisonedData(x_out, y.clone(), indices, self.target)
