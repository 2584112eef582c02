"""The two exceptions to "a schedule is a pure function of progress".

``plateau`` is metric-driven: its time part (a warmup) is a pure function like every other
schedule, and a separate mutable :class:`PlateauTracker`, fed the validation metric once per
epoch, supplies a second factor. ``schedule_free`` is optimizer-based: the multiplier stays 1
and the trainer swaps in a schedule-free optimizer that does the scheduling itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from robustlr.schedules.base import WarmupSchedule, check_range, register


@register("plateau")
@dataclass(frozen=True, kw_only=True)
class Plateau(WarmupSchedule):
    """Reduce on plateau (METRIC-DRIVEN): multiply by factor when the metric stalls.

    The frozen schedule holds the configuration; ``schedule(p)`` is only its time-driven part
    (the linear warmup, then 1). The trainer creates ``tracker = schedule.tracker()`` once,
    calls ``tracker.observe(metric)`` once per epoch (lower is better) and uses
    ``base_lr * schedule(p) * tracker.factor``. As torch's ReduceLROnPlateau (mode ``min``,
    relative threshold, no cooldown): after more than ``patience`` epochs without an
    improvement below ``best - threshold * |best|``, the factor is multiplied by ``factor``,
    never below ``min_factor``.
    """

    patience: int = 10
    factor: float = 0.1
    threshold: float = 1e-4
    min_factor: float = 0.0

    metric_driven = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) \
                or self.patience < 0:
            raise ValueError(f"patience must be an integer >= 0 (epochs), got {self.patience!r}")
        check_range("factor", self.factor, 0.0, 1.0, low_open=True, high_open=True)
        check_range("threshold", self.threshold, 0.0, math.inf, high_open=True)
        check_range("min_factor", self.min_factor, 0.0, 1.0)

    def after(self, progress: float) -> float:
        return 1.0

    def tracker(self) -> PlateauTracker:
        return PlateauTracker(self)


@dataclass
class PlateauTracker:
    """The mutable, metric-driven part of a ``plateau`` schedule; one per training run."""

    config: Plateau
    factor: float = 1.0  # the current metric-driven multiplier
    best: float = math.inf
    bad_epochs: int = 0

    def observe(self, value: float) -> float:
        """Record one epoch's metric (lower is better; NaN counts as no improvement).

        Returns the factor to use from now on.
        """
        value = float(value)
        if self._improves(value):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.config.patience:
            self.factor = max(self.factor * self.config.factor, self.config.min_factor)
            self.bad_epochs = 0
        return self.factor

    def state_dict(self) -> dict[str, float]:
        """The mutable state, for checkpoints of resumable trials."""
        return {"factor": self.factor, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.factor, self.best = float(state["factor"]), float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])

    def _improves(self, value: float) -> bool:
        if math.isinf(self.best):
            return value < self.best  # the first finite value; False for NaN
        return value < self.best - self.config.threshold * abs(self.best)


@register("schedule_free")
@dataclass(frozen=True, kw_only=True)
class ScheduleFree(WarmupSchedule):
    """Schedule-free SGD/AdamW (OPTIMIZER-BASED): multiplier 1 (Defazio et al. 2024).

    "The road less scheduled" (NeurIPS 2024): no decay is needed; the trainer builds
    ``schedulefree.SGDScheduleFree`` or ``AdamWScheduleFree`` with
    ``warmup_steps = round(warmup * total_steps)`` (see :meth:`warmup_steps`), which does the
    warmup itself, and must switch the optimizer to its evaluation weights for evaluation.
    ``schedule(p)`` is 1.0 throughout, so the warmup is never applied twice.
    """

    warmup: float = 0.05

    optimizer_based = True

    def __call__(self, progress: float) -> float:
        return 1.0

    def warmup_steps(self, total_steps: int) -> int:
        """The optimizer's ``warmup_steps`` for a run of ``total_steps`` optimizer steps."""
        return round(self.warmup * total_steps)
