"""The regime interface: how a batch becomes a loss and an update.

The training loop owns the schedule, the step counter, evaluation, checkpoints, metrics and
timing; a regime only decides what happens to one batch (timm's ``TrainingTask`` returns a
dict of losses the same way). Adversarial, DP and poisoning regimes plug in here without
touching the loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from robustlr import distributed, plugins
from robustlr.distributed import World
from robustlr.privacy.ledger import Entry
from robustlr.spec import Registry, Spec, SpecError, parse


class RegimeRegistry(Registry):
    """The built-in regimes by name; ``"package.module:MyRegime(...)"`` is the user's own
    training step: a :class:`Regime` subclass (or a factory returning one) built with the
    spec's keyword arguments."""

    def check(self, value: str | Mapping[str, Any] | Spec,
              context_names: tuple[str, ...] = ()) -> tuple[Spec, dict[str, Any]]:
        spec = parse(value, kind="regime")
        if not plugins.is_import_path(spec.name):
            return super().check(spec, context_names)
        factory = plugins.resolve(spec.name, field=f"regime '{spec.name}'")
        kwargs = {key: list(v) if isinstance(v, tuple) else v for key, v in spec.params}
        names, anything = plugins.accepted(factory)
        unknown = next((key for key in kwargs if key not in names and not anything), None)
        if unknown is not None:
            raise SpecError(f"regime '{spec.name}': unknown parameter '{unknown}'; allowed: "
                            f"{', '.join(sorted(names)) or 'none'}")
        return spec, kwargs

    def build(self, value: str | Mapping[str, Any] | Spec, **context: Any) -> Any:
        spec, kwargs = self.check(value, tuple(context))
        if not plugins.is_import_path(spec.name):
            return super().build(spec, **context)
        factory = plugins.resolve(spec.name, field=f"regime '{spec.name}'")
        regime = plugins.call(factory, kwargs, {}, field=f"regime '{spec.name}'")
        if not isinstance(regime, Regime):
            raise SpecError(f"regime '{spec.name}': the factory returned "
                            f"{type(regime).__name__}, not a robustlr.regimes.Regime subclass")
        return regime


REGIMES = RegimeRegistry("regime")


@dataclass
class TrainingSetup:
    """What a regime may wrap before training starts (DP wraps all three)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: Any  # an iterable of (x, y) batches; DP may replace it
    total_steps: int  # optimizer steps planned for the whole trial
    epochs: int
    dataset_size: int
    batch_size: int
    device: torch.device
    generator: torch.Generator
    train_data: tuple[torch.Tensor, torch.Tensor]  # for regimes that build their own loader
    world: World = field(default_factory=World)  # the processes training this trial together
    # privacy-ledger entries already spent on the training data (its statistics, a filter's
    # pass, a planned selection): a private regime composes them with its own and caps the total
    ledger: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class Plan:
    """What is known of a trial before any run folder exists, for :meth:`Regime.check_plan`."""

    dataset_size: int
    batch_size: int
    model: nn.Module
    ledger: tuple[Entry, ...] = ()  # the entries every trial of the grid will start from
    augmented: bool = False  # data.augment is set


class Regime:
    """Standard training; subclasses override only what differs."""

    name = "standard"
    # what its training loss measures, for lr-find: "clean", "robust" (on attacked inputs)
    # or "private" (clipped and noised)
    loss_kind = "clean"

    def spent(self) -> float | None:
        """The privacy this regime has spent so far (epsilon); None when it promises none."""
        return None
    # train.label_smoothing, set by training.setup before prepare(); every regime's training
    # loss goes through ``criterion`` so the recipe applies to all of them
    label_smoothing = 0.0
    # train.loss: the user's loss(logits, y) -> scalar in place of cross-entropy
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    # augmented views of each example in a batch (DP augmentation multiplicity); the loop's
    # batches then hold each example's views in consecutive rows
    views = 1

    def criterion(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.loss_fn is not None:
            return self.loss_fn(logits, y)
        return nn.functional.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    def check_plan(self, plan: Plan) -> None:
        """Raise ``ValueError`` (one line) when this regime cannot train as planned; called
        before any run folder exists, so a config that cannot work never starts."""

    def prepare(self, setup: TrainingSetup) -> TrainingSetup:
        """Wrap the model, optimizer or loader once, before the first step."""
        return setup

    def losses(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
               progress: float) -> dict[str, torch.Tensor]:
        """Return at least ``loss`` (to back-propagate) and ``logits`` (for train accuracy).

        ``progress`` in [0, 1] is the fraction of planned optimizer steps already taken, so
        regimes can ramp their own parameters (an epsilon ramp) on the same clock as the LR.
        """
        logits = model(x)
        return {"loss": self.criterion(logits, y), "logits": logits}

    def data_parallel(self, setup: TrainingSetup) -> nn.Module:
        """The model the training step uses when several processes train (after prepare):
        DDP here; the DP regime wraps its own model in Opacus' DP-DDP in ``prepare``."""
        return distributed.data_parallel(setup.model, setup.loader, setup.device)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Apply the update; return False when no real optimizer step was taken.

        Under DP with a memory manager, several physical batches make one logical step, and
        only real steps advance the schedule clock.
        """
        optimizer.step()
        return True

    def before_step(self, *, progress: float) -> None:
        """Set per-step parameters (noise, clipping) for the coming step."""

    def epoch_metrics(self) -> dict[str, float]:
        """Extra per-epoch numbers (e.g. epsilon spent) for ``epochs.csv``."""
        return {}

    def stop_reason(self) -> str | None:
        """A trial status that ends training early (e.g. ``budget_exhausted``), or None."""
        return None

    def summary(self) -> dict[str, Any]:
        """Extra ``summary.json`` fields describing the regime's outcome."""
        return {}

    @contextlib.contextmanager
    def attack_mode(self, model: nn.Module) -> Iterator[None]:
        """Context in which input gradients may be taken (DP turns its hooks off here)."""
        yield

    def trained_model(self, model: nn.Module) -> nn.Module:
        """The plain module to save and evaluate (DP unwraps its GradSampleModule)."""
        return model

    # -- resuming mid-way (train.checkpoint_every) ------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything the regime needs to continue a trial exactly (RNG states, counters,
        accountant history); torch tensors, numbers, strings, lists and dicts only."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output after ``prepare``."""


@REGIMES.register("standard")
def standard() -> Regime:
    """Empirical risk minimisation: cross-entropy on clean batches."""
    return Regime()
