"""Schedules that rise again: SGDR warm restarts, one-cycle and triangular cyclic LR."""

from __future__ import annotations

import math
from dataclasses import dataclass

from robustlr.schedules.base import (
    Schedule,
    WarmupSchedule,
    check_choice,
    check_range,
    clamp,
    cosine_between,
    linear_between,
    register,
)


@register("cosine_restarts")
@dataclass(frozen=True, kw_only=True)
class CosineRestarts(WarmupSchedule):
    """Cosine annealing with warm restarts, SGDR (Loshchilov & Hutter 2017).

    After warmup, ``cycles`` cosine cycles from 1 to ``floor``, each ``mult`` times longer than
    the one before, that together fill training exactly (so it ends at the floor): the first
    has length ``L0 = (mult - 1) / (mult ** cycles - 1)`` of the post-warmup time (``1 / cycles``
    for ``mult = 1``); cycle ``k`` starts at ``L0 * (mult ** k - 1) / (mult - 1)``. Within a cycle
    at position ``x`` in [0, 1): ``m = floor + (1 - floor) * (1 + cos(pi x)) / 2``.
    """

    cycles: int = 3
    mult: float = 2.0
    floor: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.cycles, bool) or not isinstance(self.cycles, int) or self.cycles < 1:
            raise ValueError(f"cycles must be an integer >= 1, got {self.cycles!r}")
        check_range("mult", self.mult, 1.0, math.inf, high_open=True)
        check_range("floor", self.floor, 0.0, 1.0)

    def restarts(self) -> list[float]:
        """Progress (of the whole training) at which each cycle starts, the first included."""
        return [self.warmup + (1.0 - self.warmup) * self._start(k) for k in range(self.cycles)]

    def _start(self, k: int) -> float:
        if self.mult == 1.0:
            return k / self.cycles
        return (self.mult ** k - 1.0) / (self.mult ** self.cycles - 1.0)

    def after(self, progress: float) -> float:
        t = self.rest(progress)
        k = self.cycles - 1
        while k > 0 and t < self._start(k) - 1e-12:  # a restart at s / N is not lost to rounding
            k -= 1
        x = (t - self._start(k)) / (self._start(k + 1) - self._start(k))
        return cosine_between(1.0, self.floor, min(max(x, 0.0), 1.0))


ANNEALING = ("cos", "linear")


@register("onecycle")
@dataclass(frozen=True, kw_only=True)
class OneCycle(Schedule):
    """One-cycle policy as torch's OneCycleLR (Smith & Topin 2019).

    "Super-convergence".

    The multiplier is relative to the peak (the base LR): it anneals from ``1 / div_factor``
    up to 1 at ``peak_at``, then down to ``1 / (div_factor * final_div_factor)`` at the end;
    ``three_phase`` returns to ``1 / div_factor`` at ``2 * peak_at`` before the final descent.
    ``anneal`` is ``cos`` (half-cosine) or ``linear``. torch places the peak at step
    ``peak_at * N - 1`` and the end at step ``N - 1``; here they sit at progress ``peak_at`` and
    1, so per-step values differ from torch's by O(1 / N).
    """

    peak_at: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal: str = "cos"
    three_phase: bool = False

    def __post_init__(self) -> None:
        check_range("peak_at", self.peak_at, 0.0, 0.5 if self.three_phase else 1.0,
                    low_open=True, high_open=True)
        check_range("div_factor", self.div_factor, 1.0, math.inf, high_open=True)
        check_range("final_div_factor", self.final_div_factor, 1.0, math.inf, high_open=True)
        check_choice("anneal", self.anneal, ANNEALING)

    def __call__(self, progress: float) -> float:
        p, a = clamp(progress), self.peak_at
        shape = cosine_between if self.anneal == "cos" else linear_between
        initial = 1.0 / self.div_factor
        final = initial / self.final_div_factor
        if p <= a:
            return shape(initial, 1.0, p / a)
        if not self.three_phase:
            return shape(1.0, final, (p - a) / (1.0 - a))
        if p <= 2 * a:
            return shape(1.0, initial, (p - a) / a)
        return shape(initial, final, (p - 2 * a) / (1.0 - 2 * a))


@register("cyclic")
@dataclass(frozen=True, kw_only=True)
class Cyclic(Schedule):
    """Triangular cyclical LR between min and 1 (Smith 2017).

    "Cyclical learning rates for training neural networks" (WACV 2017): ``cycles`` triangles
    over training; with ``x = (p * cycles) mod 1``, ``m = min + (1 - min) * (1 - |2x - 1|)``.
    It starts and ends at ``min`` and peaks at ``(k + 0.5) / cycles``.
    """

    cycles: int = 4
    min: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.cycles, bool) or not isinstance(self.cycles, int) or self.cycles < 1:
            raise ValueError(f"cycles must be an integer >= 1, got {self.cycles!r}")
        check_range("min", self.min, 0.0, 1.0)

    def __call__(self, progress: float) -> float:
        x = (clamp(progress) * self.cycles) % 1.0
        return self.min + (1.0 - self.min) * (1.0 - abs(2.0 * x - 1.0))
