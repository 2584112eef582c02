"""Monotone decays after an optional linear warmup: constant, step, exponential, linear,
polynomial, cosine, inverse square root and warmup-stable-decay.

In the formulas ``p`` is progress in [0, 1], ``w`` the warmup fraction and
``t = (p - w) / (1 - w)`` the progress after warmup (``t = p`` without warmup).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from robustlr.schedules.base import (
    WarmupSchedule,
    check_choice,
    check_range,
    cosine_between,
    linear_between,
    register,
)


@register("constant")
@dataclass(frozen=True, kw_only=True)
class Constant(WarmupSchedule):
    """Constant multiplier 1 (after an optional linear warmup).

    ``m(p) = 1``. With ``warmup=0`` this is exactly training without a schedule.
    """

    def after(self, progress: float) -> float:
        return 1.0


@register("step")
@dataclass(frozen=True, kw_only=True)
class Step(WarmupSchedule):
    """Multi-step decay: multiply by gamma at each milestone (Rice et al. 2020).

    ``m(p) = gamma ** #{milestones <= p}``; milestones are fractions of the whole training
    (not of the post-warmup part), as epochs are in "Overfitting in adversarially robust deep
    learning" (Rice, Wong & Kolter, ICML 2020), whose robust overfitting starts at the first
    decay. Warmup, if any, must end before the first milestone.
    """

    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("gamma", self.gamma, 0.0, 1.0, low_open=True)
        if not self.milestones:
            raise ValueError("milestones must list at least one fraction in (0, 1)")
        for milestone in self.milestones:
            check_range("milestones", milestone, self.warmup, 1.0, low_open=True, high_open=True)
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:])):
            raise ValueError(f"milestones must be strictly increasing, got {list(self.milestones)}")

    def after(self, progress: float) -> float:
        return self.gamma ** bisect.bisect_right(self.milestones, progress)


@register("exponential")
@dataclass(frozen=True, kw_only=True)
class Exponential(WarmupSchedule):
    """Exponential decay from 1 to final at the end of training.

    ``m = final ** t``: the per-fraction form, so a spec does not depend on the number of
    epochs (torch's ExponentialLR ``gamma`` per epoch equals ``final ** (1 / epochs)``).
    """

    final: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("final", self.final, 0.0, 1.0, low_open=True)

    def after(self, progress: float) -> float:
        return self.final ** self.rest(progress)


@register("linear")
@dataclass(frozen=True, kw_only=True)
class Linear(WarmupSchedule):
    """Linear decay from 1 to final.

    ``m = 1 - (1 - final) * t`` (torch's LinearLR with end at the last step).
    """

    final: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("final", self.final, 0.0, 1.0)

    def after(self, progress: float) -> float:
        return linear_between(1.0, self.final, self.rest(progress))


@register("polynomial")
@dataclass(frozen=True, kw_only=True)
class Polynomial(WarmupSchedule):
    """Polynomial ("poly") decay from 1 to final with exponent power (Chen et al. 2017).

    ``m = final + (1 - final) * (1 - t) ** power``; power 0.9 as in DeepLab (Chen et al.,
    "DeepLab", TPAMI 2017); power 1 is linear decay.
    """

    power: float = 0.9
    final: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("power", self.power, 0.0, math.inf, low_open=True, high_open=True)
        check_range("final", self.final, 0.0, 1.0)

    def after(self, progress: float) -> float:
        return self.final + (1.0 - self.final) * (1.0 - self.rest(progress)) ** self.power


@register("cosine")
@dataclass(frozen=True, kw_only=True)
class Cosine(WarmupSchedule):
    """Cosine annealing from 1 to floor after an optional warmup (Loshchilov & Hutter 2017).

    ``m = floor + (1 - floor) * (1 + cos(pi * t)) / 2`` (Loshchilov & Hutter, "SGDR",
    ICLR 2017, without restarts).
    """

    floor: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("floor", self.floor, 0.0, 1.0)

    def after(self, progress: float) -> float:
        return cosine_between(1.0, self.floor, self.rest(progress))


@register("inverse_sqrt")
@dataclass(frozen=True, kw_only=True)
class InverseSqrt(WarmupSchedule):
    """Linear warmup, then inverse-square-root decay (Vaswani et al. 2017).

    "Attention is all you need": ``m = 1 / sqrt(1 + (p - w) / timescale)`` for ``p >= w``;
    ``timescale`` defaults to the warmup, which gives the Transformer's
    ``min(p / w, sqrt(w / p))``.
    """

    warmup: float = 0.05
    timescale: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.timescale is not None:
            check_range("timescale", self.timescale, 0.0, math.inf, low_open=True, high_open=True)
        elif self.warmup == 0:
            raise ValueError("timescale must be set (> 0) when warmup is 0")

    def after(self, progress: float) -> float:
        timescale = self.timescale if self.timescale is not None else self.warmup
        return 1.0 / math.sqrt(1.0 + (progress - self.warmup) / timescale)


WSD_SHAPES = ("linear", "cosine", "sqrt")


@register("wsd")
@dataclass(frozen=True, kw_only=True)
class WarmupStableDecay(WarmupSchedule):
    """Warmup-stable-decay: warmup, constant 1, then decay over the last fraction (Hu et al. 2024).

    With ``d = (p - (1 - decay)) / decay`` in the decay phase: ``linear`` ``1 - d``, ``cosine``
    ``(1 + cos(pi d)) / 2``, ``sqrt`` ``1 - sqrt(d)``, each scaled to end at ``final``
    (Hu et al. 2024, "MiniCPM"; Hägele et al. 2024, "Scaling laws and compute-optimal training
    beyond fixed training durations", who recommend ``sqrt``). ``warmup`` and ``decay`` are
    fractions of the whole training.
    """

    warmup: float = 0.05
    decay: float = 0.2
    shape: str = "linear"
    final: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("decay", self.decay, 0.0, 1.0 - self.warmup, low_open=True)
        check_choice("shape", self.shape, WSD_SHAPES)
        check_range("final", self.final, 0.0, 1.0)

    def after(self, progress: float) -> float:
        d = (progress - (1.0 - self.decay)) / self.decay
        if d <= 0:
            return 1.0
        fraction = {"linear": 1.0 - d, "cosine": (1.0 + math.cos(math.pi * d)) / 2.0,
                    "sqrt": 1.0 - math.sqrt(d)}[self.shape]
        return self.final + (1.0 - self.final) * fraction
