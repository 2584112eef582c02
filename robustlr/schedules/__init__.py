"""Learning-rate schedules: pure functions of training progress, built from specs.

A schedule maps progress ``p = steps_taken / total_steps`` in [0, 1] to a multiplier of the
base LR and is applied at EVERY optimizer step: the LR for the step about to be taken is
``base_lr * schedule(steps_taken / total_steps)``, so step ``s`` of ``N`` (``s = 0 .. N-1``)
uses ``schedule(s / N)`` — exactly what :func:`values` returns. Time parameters (milestones,
warmup, cycle lengths) are fractions of training, so one spec fits any number of epochs.

Two exceptions say so: ``plateau`` is metric-driven (``tracker()`` returns a mutable
:class:`PlateauTracker`; all other schedules return None) and ``schedule_free`` is
optimizer-based (``optimizer_based = True``; the trainer swaps in a schedule-free optimizer).

>>> schedule = parse("cosine(warmup=0.05, floor=0.01)")
>>> str(schedule)
'cosine(warmup=0.05, floor=0.01)'
>>> [round(m, 4) for m in values(parse("step(milestones=[0.5], gamma=0.1)"), 4)]
[1.0, 1.0, 0.1, 0.1]
>>> schedule(0.0), schedule(1.0)   # warming up from 0; the floor at the end
(0.0, 0.01)
"""

from __future__ import annotations

from typing import Any

from robustlr.schedules.base import SCHEDULES, Schedule, WarmupSchedule, parse, values
from robustlr.spec import Spec

# import order is registration order, which is the order `robustlr schedules` lists
from robustlr.schedules.decay import (  # isort: skip
    Constant, Cosine, Exponential, InverseSqrt, Linear, Polynomial, Step, WarmupStableDecay)
from robustlr.schedules.cyclic import CosineRestarts, Cyclic, OneCycle  # isort: skip
from robustlr.schedules.special import Plateau, PlateauTracker, ScheduleFree  # isort: skip
from robustlr.schedules.plot import plot  # isort: skip


def _torch_schedule(spec: Spec) -> Schedule:
    from robustlr.schedules import torch_lr  # imports torch: only when a torch: spec is used

    return torch_lr.build(spec)


SCHEDULES.family("torch:", _torch_schedule)


def describe() -> list[tuple[str, str, dict[str, Any]]]:
    """``(name, one-line summary, {parameter: default})`` for every registered schedule."""
    return [(entry.name, entry.summary, entry.parameters()) for entry in SCHEDULES.entries()]


__all__ = ["SCHEDULES", "Schedule", "WarmupSchedule", "PlateauTracker", "parse", "values",
           "describe", "plot", "Constant", "Step", "Exponential", "Linear", "Polynomial",
           "Cosine", "InverseSqrt", "WarmupStableDecay", "CosineRestarts", "OneCycle", "Cyclic",
           "Plateau", "ScheduleFree"]
