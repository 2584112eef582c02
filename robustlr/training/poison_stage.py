"""The poisoning stage of a trial: poison the training split, filter it, and measure the
backdoor every epoch.

Order of work: (1) poison the training split with the trial's seed (the poisoned positions are
the ground truth); (2) where a filter is asked for, train the trial's model briefly on the
poisoned data with the trial's own schedule (compressed to ``filtering.epochs``), recording
each example's loss after every epoch and the penultimate features at the end — so the
loss-trajectory filter sees the schedule's LR phases; (3) filter, score the filter against the
ground truth, and hand the kept data to the real training run.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustlr.attacks.filters import FilterInputs
from robustlr.attacks.filters.metrics import filter_metrics
from robustlr.attacks.filters.representations import penultimate
from robustlr.catalog import FILTERS, POISONS
from robustlr.data import DataBundle
from robustlr.privacy.ledger import Entry
from robustlr.regimes.dp_ledger import filter_entry
from robustlr.spec import is_none, parse
from robustlr.training.loop import train_trial
from robustlr.training.probes.base import Probe

# Attacks that perturb with a model trained on clean data (Turner et al.'s clean-label).
_NEEDS_CLEAN_MODEL = {"clean_label"}
# Poison choices draw from their own stream so they do not shift the training batches.
_POISON_SEED_OFFSET = 104729


@dataclass
class PoisonStage:
    bundle: DataBundle  # train replaced by the poisoned (and filtered) split
    poison: Any | None  # the built attack, for the backdoor probe
    summary: dict[str, Any]


class _LossRecorder(Probe):
    """Per-example training losses after every epoch, the final features and model."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, want_losses: bool,
                 want_features: bool, batch_size: int):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.want_losses, self.want_features = want_losses, want_features
        self.losses: list[torch.Tensor] = []
        self.features: torch.Tensor | None = None
        self.model: nn.Module | None = None

    @torch.no_grad()
    def epoch(self, model: nn.Module) -> dict[str, float]:
        if not self.want_losses:
            return {}
        device = next(model.parameters()).device
        chunks = [nn.functional.cross_entropy(model(xb.to(device)), yb.to(device), reduction="none").cpu()
                  for xb, yb in zip(self.x.split(self.batch_size), self.y.split(self.batch_size))]
        self.losses.append(torch.cat(chunks))
        return {}

    def final(self, model: nn.Module, trial_dir: Path | None) -> dict[str, Any]:
        self.model = model
        if self.want_features:
            self.features = penultimate(model, self.x, batch_size=self.batch_size)
        return {}


def _short_training(config, trial, bundle: DataBundle, epochs: int, recorder: Probe) -> None:
    """Train the trial's model and schedule for ``epochs`` on ``bundle`` (standard regime)."""
    short = config.model_copy(update={
        "train": config.train.model_copy(update={"epochs": epochs, "checkpoints": "none"}),
        "evaluation": type(config.evaluation)(batch_size=config.evaluation.batch_size)})
    clean_trial = dataclasses.replace(trial, regime="standard", poison="none", filter="none")
    train_trial(short, clean_trial, bundle, on_epoch=lambda row: None, probes=[recorder])


def prepare(config, trial, bundle: DataBundle) -> PoisonStage:
    """Poison and filter ``bundle.train`` as the trial asks; a no-op for ``none``/``none``."""
    summary: dict[str, Any] = {"poison": trial.poison, "filter": trial.filter}
    if is_none(trial.poison) and is_none(trial.filter):
        return PoisonStage(bundle, None, summary)
    started = time.perf_counter()
    poison = POISONS.build(trial.poison)
    x, y = bundle.train
    model = None
    if parse(trial.poison).name in _NEEDS_CLEAN_MODEL:
        recorder = _LossRecorder(x, y, want_losses=False, want_features=False,
                                 batch_size=config.evaluation.batch_size)
        _short_training(config, trial, bundle, config.filtering.epochs, recorder)
        model = recorder.model
    generator = torch.Generator().manual_seed(trial.seed + _POISON_SEED_OFFSET)
    poisoned = poison.poison(x, y, num_classes=bundle.num_classes, generator=generator, model=model)
    summary.update(poison_rate=poisoned.fraction, poisoned_count=len(poisoned.indices))
    train, ledger = (poisoned.x, poisoned.y), bundle.ledger
    if not is_none(trial.filter):
        train, metrics, entry = _filter(config, trial, dataclasses.replace(bundle, train=train),
                                        poisoned)
        summary.update(metrics)
        ledger += (entry,)
    summary["poison_seconds"] = time.perf_counter() - started
    has_trigger = hasattr(poison, "apply_trigger")
    return PoisonStage(dataclasses.replace(bundle, train=train, ledger=ledger),
                       poison if has_trigger else None, summary)


def _filter(config, trial, bundle: DataBundle, poisoned) -> tuple[tuple, dict[str, Any], Entry]:
    defence = FILTERS.build(trial.filter)
    needs = set(getattr(defence, "needs", {"features"}))
    x, y = bundle.train
    recorder = _LossRecorder(x, y, want_losses="losses" in needs,
                             want_features="features" in needs,
                             batch_size=config.evaluation.batch_size)
    _short_training(config, trial, bundle, config.filtering.epochs, recorder)
    inputs = FilterInputs(
        labels=y, num_classes=bundle.num_classes, features=recorder.features,
        losses=torch.stack(recorder.losses, dim=1) if "losses" in needs else None,
        # Tran et al.'s defender knows the poison rate; filter(expected_rate=...) overrides it.
        expected_rate=max(poisoned.fraction, 1.0 / len(y)))
    result = defence.fit_predict(inputs)
    metrics = filter_metrics(result.keep, poisoned.indices)
    metrics["removed_count"] = int((~result.keep).sum())
    # the filter saw every example without noise: its pass is on the ledger (a DP regime
    # refuses it unless its guarantee is stated for the filtered set)
    entry = filter_entry(trial.filter, examples=len(y), kept=int(result.keep.sum()))
    return (x[result.keep], y[result.keep]), metrics, entry
