"""Blended backdoor: a fixed random pattern mixed into the whole input, relabelled.

Chen, Liu, Li, Lu & Song, "Targeted Backdoor Attacks on Deep Learning Systems Using Data
Poisoning", 2017, https://arxiv.org/abs/1712.05526 (the blended-injection strategy with a
random-noise key pattern): ``x' = (1 - alpha) * x + alpha * pattern``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..contracts import POISONS
from .base import PoisonedData, check_int, check_number, check_rate, dirty_label_backdoor


@POISONS.register("blend")
@dataclass(frozen=True)
class Blend:
    """Blend-trigger backdoor; ``rate`` is the poisoned fraction of the whole training set.

    The pattern is uniform noise in [0, 1] drawn from its own ``seed``, not from the poisoning
    generator, so the very same key is applied at test time and across trials.
    """

    rate: float
    target: int = 0
    alpha: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        check_rate(self.rate)
        check_int("target", self.target, low=0)
        check_number("alpha", self.alpha, low=0.0, high=1.0)
        check_int("seed", self.seed, low=0)

    def pattern(self, shape: tuple[int, ...]) -> torch.Tensor:
        """The key pattern for one input of ``shape`` (C, H, W) or (C, L)."""
        generator = torch.Generator().manual_seed(self.seed)
        return torch.rand(math.prod(shape), generator=generator).view(shape)

    def apply_trigger(self, x: torch.Tensor) -> torch.Tensor:
        key = self.pattern(tuple(x.shape[1:])).to(x)
        return (1 - self.alpha) * x + self.alpha * key

    def poison(self, x: torch.Tensor, y: torch.Tensor, *, num_classes: int,
               generator: torch.Generator | None, model: torch.nn.Module | None = None,
               ) -> PoisonedData:
        """Poisoned copy of (x, y); ``model`` is unused (dirty-label attacks need none)."""
        return dirty_label_backdoor(self, x, y, num_classes=num_classes, generator=generator)
