"""The schedule base classes, the registry, the shared warmup and the parameter checks.

A schedule maps training progress ``p`` in [0, 1] (optimizer steps taken / planned steps)
to a multiplier of the base LR. The trainer owns the only clock and applies the schedule at
every optimizer step: the LR for the step about to be taken is
``base_lr * schedule(steps_taken / total_steps)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol, TypeVar

from robustlr.spec import Registry, Spec
from robustlr.spec import parse as parse_spec


class Tracker(Protocol):
    """The mutable, metric-driven part of a schedule (plateau's PlateauTracker)."""

    @property
    def factor(self) -> float: ...

    def observe(self, value: float) -> float: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class ScheduleRegistry(Registry):
    """The built-in schedules by name, and families of schedules named ``prefix:Name(...)``
    (``torch:OneCycleLR(...)``, :mod:`robustlr.schedules.torch_lr`), each built by the
    function the family registered (:meth:`family`)."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self._families: dict[str, Callable[[Spec], Any]] = {}

    def family(self, prefix: str, build: Callable[[Spec], Any]) -> None:
        self._families[prefix] = build

    def _family_spec(self, value: str | Mapping[str, Any] | Spec) -> tuple[Spec, Callable] | None:
        spec = parse_spec(value, kind=self.kind)
        prefix = spec.name.partition(":")[0] + ":"
        return (spec, self._families[prefix]) if ":" in spec.name and prefix in self._families else None

    def check(self, value: str | Mapping[str, Any] | Spec,
              context_names: tuple[str, ...] = ()) -> tuple[Spec, dict[str, Any]]:
        found = self._family_spec(value)
        if found is not None:
            found[1](found[0])  # building checks the parameters
            return found[0], {}
        return super().check(value, context_names)

    def build(self, value: str | Mapping[str, Any] | Spec, **context: Any) -> Any:
        found = self._family_spec(value)
        if found is None:
            return super().build(value, **context)
        spec, build = found
        return build(spec)


SCHEDULES = ScheduleRegistry("schedule")

_S = TypeVar("_S", bound=type)


def register(name: str) -> Callable[[_S], _S]:
    """Register a schedule class under ``name`` and record the name on the class."""
    def add(cls: _S) -> _S:
        setattr(cls, "name", name)  # noqa: B010  (a ClassVar on Schedule subclasses)
        return SCHEDULES.register(name)(cls)
    return add


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """Base class: a frozen, stateless function ``progress -> LR multiplier``."""

    name: ClassVar[str] = "schedule"
    metric_driven: ClassVar[bool] = False  # plateau: a tracker adds a metric-driven factor
    optimizer_based: ClassVar[bool] = False  # schedule_free: the optimizer does the scheduling

    def __call__(self, progress: float) -> float:
        raise NotImplementedError

    def tracker(self) -> Tracker | None:
        """A mutable metric tracker for metric-driven schedules; None for all others."""
        return None

    def planned(self, *, total_steps: int, base_lr: float = 1.0) -> Schedule:
        """This schedule for a run of ``total_steps`` optimizer steps at ``base_lr``: itself,
        except for schedules whose values depend on the step count (torch's)."""
        return self

    def spec(self) -> Spec:
        """The spec that rebuilds this schedule (parameters left at their default omitted)."""
        params = tuple((f.name, getattr(self, f.name)) for f in fields(self)
                       if getattr(self, f.name) != f.default)
        return Spec(self.name, params)

    def __str__(self) -> str:
        return str(self.spec())


def clamp(progress: float) -> float:
    """Progress clipped to [0, 1] (a trainer that overruns its plan keeps the final value)."""
    return min(max(float(progress), 0.0), 1.0)


@dataclass(frozen=True, kw_only=True)
class WarmupSchedule(Schedule):
    """Shared linear warmup: ``p / warmup`` for ``p < warmup`` (0 -> 1), then ``after(p)``.

    The first step of a warmed-up schedule therefore uses LR 0. Subclasses implement
    ``after(p)`` on the absolute progress; most use :meth:`rest` to run their shape over the
    remaining ``1 - warmup`` of training.
    """

    warmup: float = 0.0

    def __post_init__(self) -> None:
        check_range("warmup", self.warmup, 0.0, 1.0, high_open=True)

    def __call__(self, progress: float) -> float:
        p = clamp(progress)
        if p < self.warmup:
            return p / self.warmup
        return float(self.after(p))

    def after(self, progress: float) -> float:
        raise NotImplementedError

    def rest(self, progress: float) -> float:
        """Progress within the post-warmup part: 0 at the end of warmup, 1 at the end."""
        return (progress - self.warmup) / (1.0 - self.warmup)


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else repr(value)


def check_range(name: str, value: float, low: float, high: float, *,
                low_open: bool = False, high_open: bool = False) -> None:
    """Raise ``ValueError("gamma must be in (0, 1], got 2")`` unless ``value`` is in range."""
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (isinstance(value, (int, float)) and above and below):  # also rejects NaN
        interval = (f"{'(' if low_open else '['}{_fmt(low)}, {_fmt(high)}"
                    f"{')' if high_open else ']'}")
        raise ValueError(f"{name} must be in {interval}, got {_fmt(value)}")


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def cosine_between(start: float, end: float, t: float) -> float:
    """Half-cosine from ``start`` (t = 0) to ``end`` (t = 1)."""
    return end + (start - end) * (1.0 + math.cos(math.pi * t)) / 2.0


def linear_between(start: float, end: float, t: float) -> float:
    return start + (end - start) * t


def parse(spec: str | Mapping[str, Any] | Spec | Schedule) -> Schedule:
    """Build a schedule from ``"cosine(warmup=0.05)"`` or ``{"name": "cosine", "warmup": 0.05}``.

    Raises :class:`robustlr.spec.SpecError` (one line naming the schedule and parameter).
    A :class:`Schedule` instance is returned unchanged.
    """
    if isinstance(spec, Schedule):
        return spec
    return SCHEDULES.build(spec)


def values(schedule: Schedule, steps: int) -> list[float]:
    """The multiplier used at each of ``steps`` optimizer steps: ``schedule(s / steps)``.

    This is exactly how the trainer applies a schedule (the LR for the step about to be
    taken is ``schedule(steps_taken / total_steps)``), so the value at progress 1 is never
    used. For ``plateau`` this is only the time-driven part.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    schedule = schedule.planned(total_steps=steps) if steps else schedule
    return [float(schedule(s / steps)) for s in range(steps)]
