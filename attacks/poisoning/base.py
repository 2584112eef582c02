"""Shared pieces of the poisoning attacks: the result type, validation and index selection.

Every attack works on float tensors in [0, 1], images (N, C, H, W) or 1-D signals (N, C, L),
with int64 labels, and draws every random choice from the caller's ``torch.Generator`` so a
poisoned data set is reproducible from (spec, seed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PoisonedData:
    """A poisoned copy of a training set.

    ``indices`` (sorted LongTensor) are the positions that were changed: the ground truth a
    filter is scored against. ``target`` is the class the attacker aims at (None for untargeted
    label flips).
    """

    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor
    target: int | None = None

    @property
    def fraction(self) -> float:
        """Poisoned fraction of the whole set (what a filter's ``expected_rate`` estimates)."""
        return len(self.indices) / max(len(self.y), 1)


def check_rate(rate: float) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be a number in (0, 1) (use poison 'none' for no poison), got {rate!r}")


def check_class(name: str, value: int | None, num_classes: int) -> None:
    """Called in ``poison()``: the number of classes is only known there."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < num_classes:
        raise ValueError(f"{name} must be an integer in [0, {num_classes - 1}], got {value!r}")


def check_int(name: str, value: int, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def check_number(name: str, value: float, *, low: float, high: float) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if not ok or math.isnan(value) or not low < value <= high:
        raise ValueError(f"{name} must be a number in ({low:g}, {high:g}], got {value!r}")


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def check_inputs(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.dim() not in (3, 4) or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor (N, C, H, W) or (N, C, L), got {tuple(x.shape)}")
    if y.dtype != torch.int64 or y.shape != x.shape[:1]:
        raise ValueError(f"y must be int64 of shape ({len(x)},), got {y.dtype} {tuple(y.shape)}")


def choose(candidates: torch.Tensor, rate: float, total: int, generator: torch.Generator | None,
           what: str) -> torch.Tensor:
    """``round(rate * total)`` positions drawn without replacement from the bool mask
    ``candidates``, sorted. Too few candidates or a count of zero is the caller's error."""
    pool = candidates.nonzero().flatten()
    count = round(rate * total)
    if count == 0:
        raise ValueError(f"rate {rate:g} of {total} examples selects no {what}; raise rate")
    if count > len(pool):
        raise ValueError(f"rate {rate:g} asks for {count} {what} but only {len(pool)} are eligible")
    picked = pool[torch.randperm(len(pool), generator=generator)[:count]]
    return picked.sort().values


def dirty_label_backdoor(attack, x: torch.Tensor, y: torch.Tensor, *, num_classes: int,
                         generator: torch.Generator | None) -> PoisonedData:
    """The dirty-label recipe shared by BadNets and Blend: pick ``rate`` of the whole set among
    examples not already of the target class (relabelling those would be a no-op and inflate
    the count), stamp the trigger, relabel to the target."""
    check_inputs(x, y)
    check_class("target", attack.target, num_classes)
    indices = choose(y != attack.target, attack.rate, len(y), generator, "non-target examples")
    x_out, y_out = x.clone(), y.clone()
    x_out[indices] = attack.apply_trigger(x[indices])
    y_out[indices] = attack.target
    return PoisonedData(x_out, y_out, indices, attack.target)
