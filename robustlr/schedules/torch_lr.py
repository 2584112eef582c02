"""torch's own LR schedulers as schedules: ``"torch:OneCycleLR(max_lr=0.1)"``,
``{name: "torch:CosineAnnealingLR", eta_min: 0.001}``, ``"torch:ReduceLROnPlateau(patience=2)"``.

A torch scheduler is a stateful object stepped by the training code; here it becomes what
every robustlr schedule is, a function of progress, by driving it once over the planned
optimizer steps on a one-parameter optimizer whose LR is the trial's base LR and tabulating
``lr / base_lr``. So the trial's LR at step ``s`` is exactly the LR torch would have set on the
same optimizer after ``s`` scheduler steps (tested step for step). The trainer plans the
schedule once it knows its step count (:meth:`TorchSchedule.planned`) and fills in the
length parameter the user left out: ``total_steps`` (OneCycleLR), ``T_max``
(CosineAnnealingLR), ``total_iters`` (LinearLR, PolynomialLR).

Only the LR is taken: OneCycleLR's momentum cycling (``cycle_momentum``) is not applied to
the trial's optimizer. ``ReduceLROnPlateau`` is metric-driven like ``plateau``: its tracker
steps torch's scheduler on the validation loss once per epoch. Schedulers built from other
schedulers or from Python callables (SequentialLR, ChainedScheduler, LambdaLR,
MultiplicativeLR) cannot be written as a spec and are refused.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.optim import lr_scheduler

from robustlr.schedules.base import Schedule, clamp
from robustlr.spec import Spec, SpecError

PREFIX = "torch:"
LENGTH = {"OneCycleLR": "total_steps", "CosineAnnealingLR": "T_max", "LinearLR": "total_iters",
          "PolynomialLR": "total_iters"}
"""The parameter that says how long training is, filled with the planned optimizer steps."""
METRIC_DRIVEN = ("ReduceLROnPlateau",)
SUPPORTED = ("ConstantLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "CyclicLR",
             "ExponentialLR", "LinearLR", "MultiStepLR", "OneCycleLR", "PolynomialLR",
             "ReduceLROnPlateau", "StepLR")
_CHECK_STEPS = 100  # a plan length to build the scheduler once when a config is checked


def is_torch(name: str) -> bool:
    return name.strip().startswith(PREFIX)


def _one_parameter_optimizer(lr: float) -> torch.optim.Optimizer:
    # momentum, so that schedulers that cycle it (OneCycleLR, CyclicLR) accept the optimizer
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def _scheduler(name: str, params: tuple[tuple[str, Any], ...], optimizer: torch.optim.Optimizer,
               total_steps: int | None):
    kwargs = {key: list(value) if isinstance(value, tuple) else value for key, value in params}
    length = LENGTH.get(name)
    if length is not None and length not in kwargs and total_steps is not None:
        kwargs[length] = total_steps
    try:
        return getattr(lr_scheduler, name)(optimizer, **kwargs)
    except (TypeError, ValueError) as error:
        raise SpecError(f"schedule '{PREFIX}{name}': {error}") from None


@dataclass(frozen=True, kw_only=True)
class TorchSchedule(Schedule):
    """A torch scheduler's LR multipliers over a planned number of steps (see the module)."""

    scheduler: str
    params: tuple[tuple[str, Any], ...] = ()
    table: tuple[float, ...] = ()
    name: ClassVar[str] = "torch"

    def planned(self, *, total_steps: int, base_lr: float = 1.0) -> TorchSchedule:
        optimizer = _one_parameter_optimizer(base_lr)
        scheduler = _scheduler(self.scheduler, self.params, optimizer, total_steps)
        table = []
        for _ in range(total_steps):
            table.append(optimizer.param_groups[0]["lr"] / base_lr)
            optimizer.step()  # no gradient: nothing moves, but torch sees the documented order
            scheduler.step()
        return TorchSchedule(scheduler=self.scheduler, params=self.params, table=tuple(table))

    def __call__(self, progress: float) -> float:
        if not self.table:
            raise RuntimeError(f"{self}: plan it first (schedule.planned(total_steps=...)): a "
                               "torch scheduler's values depend on the number of steps")
        step = round(clamp(progress) * len(self.table))
        return self.table[min(step, len(self.table) - 1)]

    def spec(self) -> Spec:
        return Spec(PREFIX + self.scheduler, self.params)


@dataclass(frozen=True, kw_only=True)
class TorchPlateau(Schedule):
    """``torch:ReduceLROnPlateau(...)`` (METRIC-DRIVEN): multiplier 1 in time; the tracker
    supplies the factor torch's scheduler reaches on the validation loss."""

    params: tuple[tuple[str, Any], ...] = ()
    name: ClassVar[str] = "torch"
    metric_driven: ClassVar[bool] = True

    def __call__(self, progress: float) -> float:
        return 1.0

    def tracker(self) -> TorchPlateauTracker:
        return TorchPlateauTracker(self.params)

    def spec(self) -> Spec:
        return Spec(PREFIX + "ReduceLROnPlateau", self.params)


class TorchPlateauTracker:
    """torch's ReduceLROnPlateau on the validation loss, once per epoch; ``factor`` is the
    LR it has reached over the base LR."""

    def __init__(self, params: tuple[tuple[str, Any], ...]):
        self._optimizer = _one_parameter_optimizer(1.0)
        self._scheduler = _scheduler("ReduceLROnPlateau", params, self._optimizer, None)

    @property
    def factor(self) -> float:
        return float(self._optimizer.param_groups[0]["lr"])

    def observe(self, value: float) -> float:
        self._scheduler.step(float(value))
        return self.factor

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self._scheduler.state_dict(), "factor": self.factor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._scheduler.load_state_dict(state["scheduler"])
        for group in self._optimizer.param_groups:
            group["lr"] = float(state["factor"])


def build(spec: Spec) -> TorchSchedule | TorchPlateau:
    """The schedule ``torch:Name(...)``, checked by building torch's scheduler once."""
    name = spec.name.strip()[len(PREFIX):]
    if name not in SUPPORTED:
        raise SpecError(f"schedule '{spec.name}': unknown torch scheduler; allowed: "
                        f"{', '.join(PREFIX + s for s in SUPPORTED)}")
    allowed = [p for p in inspect.signature(getattr(lr_scheduler, name)).parameters
               if p not in ("optimizer", "last_epoch", "verbose")]
    unknown = next((key for key, _ in spec.params if key not in allowed), None)
    if unknown is not None:
        raise SpecError(f"schedule '{spec.name}': unknown parameter '{unknown}'; allowed: "
                        f"{', '.join(allowed)}")
    if name in METRIC_DRIVEN:
        plateau = TorchPlateau(params=tuple(spec.params))
        plateau.tracker()
        return plateau
    schedule = TorchSchedule(scheduler=name, params=tuple(spec.params))
    schedule.planned(total_steps=_CHECK_STEPS)
    return schedule
