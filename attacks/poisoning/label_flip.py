"""Label flipping: change the labels of a fraction of the training set, inputs untouched.

Random flips follow Biggio, Nelson & Laskov, "Support Vector Machines Under Adversarial Label
Noise", ACML 2011; the class-to-class variant (``source`` -> ``target``) is the targeted flip
used e.g. by Tolpegin et al., "Data Poisoning Attacks Against Federated Learning Systems",
ESORICS 2020.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..contracts import POISONS
from .base import PoisonedData, check_class, check_inputs, check_int, check_rate, choose


@POISONS.register("label_flip")
@dataclass(frozen=True)
class LabelFlip:
    """Flip labels.

    - ``source`` None, ``target`` None: ``rate`` of the whole set, each to a uniformly random
      other class.
    - ``source`` None, ``target`` t: ``rate`` of the whole set (non-t examples) to t.
    - ``source`` s, ``target`` t: ``rate`` of class s (a fraction of that class) to t.
    """

    rate: float
    source: int | None = None
    target: int | None = None

    def __post_init__(self) -> None:
        check_rate(self.rate)
        for name in ("source", "target"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), low=0)
        if self.source is not None and self.target is None:
            raise ValueError("target must be set when source is set (flip source -> target)")
        if self.source is not None and self.source == self.target:
            raise ValueError(f"target must differ from source, both are {self.source}")

    def poison(self, x: torch.Tensor, y: torch.Tensor, *, num_classes: int,
               generator: torch.Generator | None, model: torch.nn.Module | None = None,
               ) -> PoisonedData:
        """Poisoned copy of (x, y): x is returned unchanged (a clone), labels flipped."""
        check_inputs(x, y)
        check_class("source", self.source, num_classes)
        check_class("target", self.target, num_classes)
        if self.source is not None:
            eligible = y == self.source
            indices = choose(eligible, self.rate, int(eligible.sum()), generator,
                             f"examples of class {self.source}")
        elif self.target is not None:
            indices = choose(y != self.target, self.rate, len(y), generator, "non-target examples")
        else:
            indices = choose(torch.ones_like(y, dtype=torch.bool), self.rate, len(y), generator,
                             "examples")
        y_out = y.clone()
        if self.target is not None:
            y_out[indices] = self.target
        else:
            # an offset in [1, K-1] modulo K is uniform over the other classes, never the same
            offset = torch.randint(1, num_classes, (len(indices),), generator=generator)
            y_out[indices] = (y[indices] + offset) % num_classes
        return PoisonedData(x.clone(), y_out, indices, self.target)


@POISONS.register("none")
@dataclass(frozen=True)
class NoPoison:
    """The explicit "no poison" arm of a grid: data unchanged, no poisoned indices.

    Rate 0 is rejected by the real attacks so that a typo cannot silently yield a clean run;
    a clean baseline says so with ``none``.
    """

    def poison(self, x: torch.Tensor, y: torch.Tensor, *, num_classes: int,
               generator: torch.Generator | None, model: torch.nn.Module | None = None,
               ) -> PoisonedData:
        check_inputs(x, y)
        return PoisonedData(x.clone(), y.clone(), torch.empty(0, dtype=torch.int64), None)
