"""The one training loop. Regimes decide how a batch becomes a loss and an update; the loop
owns the schedule clock (optimizer steps actually taken), evaluation, checkpoints, metrics
and timing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustlr import models, schedules
from robustlr.config import ExperimentConfig
from robustlr.data import DataBundle
from robustlr.distributed import World
from robustlr.grid import Trial
from robustlr.modes import evaluating, training
from robustlr.regimes import Regime, TrainingSetup
from robustlr.training.evaluation import Evaluation, evaluate
from robustlr.training.probes import Probe
from robustlr.training.setup import backward, begin_step, prepare

EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class _Progress:
    """What the loop has measured so far (one instance per trial)."""

    steps: int = 0
    train_seconds: float = 0.0
    samples: int = 0
    status: str = "ok"
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val: float = -math.inf
    best_epoch: int | None = None


def train_trial(config: ExperimentConfig, trial: Trial, data: DataBundle, *,
                on_epoch: EpochCallback, trial_dir: Path | None = None,
                save_model: bool = False, probes: list[Probe] | None = None,
                world: World | None = None) -> dict[str, Any]:
    """Train one trial and return its summary record; ``on_epoch`` receives each epoch row.

    ``world``: this process's rank among several training the trial together (see
    :mod:`robustlr.distributed`); every rank returns the same record, and only the caller
    decides which rank writes (rank 0 gets the probes, ``on_epoch`` and ``trial_dir``).
    """
    started = time.perf_counter()
    world = world or World()
    schedule = schedules.parse(trial.schedule)
    tracker = schedule.tracker()
    prepared = prepare(config, data, regime_spec=trial.regime, seed=trial.seed,
                       lr=config.train.lr * trial.lr_scale, world=world,
                       total_steps=lambda batches: config.train.epochs * batches,
                       warmup=getattr(schedule, "warmup", 0.0) if schedule.optimizer_based else None)
    setup, regime = prepared.setup, prepared.regime
    model, optimizer = setup.model, setup.optimizer
    if world.distributed:  # only the training step sees the wrapper; evaluation the module
        setup.model = regime.data_parallel(setup)
    probes = probes or []
    run = _Progress()

    for epoch in range(1, config.train.epochs + 1):
        epoch_started = time.perf_counter()
        loss_sum, correct, seen = _train_epoch(setup, regime, schedule, tracker, run)
        epoch_seconds = time.perf_counter() - epoch_started
        run.train_seconds += epoch_seconds
        run.samples += seen
        if run.status != "ok":
            break
        with evaluating(model, optimizer, regime):
            val = evaluate(model, *data.val, num_classes=data.num_classes,
                           batch_size=config.evaluation.batch_size)
            test = evaluate(model, *data.test, num_classes=data.num_classes,
                            batch_size=config.evaluation.batch_size)
            plain = regime.trained_model(model)
            extras = {name: value for probe in probes for name, value in probe.epoch(plain).items()}
        row = _epoch_row(trial, epoch, run, optimizer, loss_sum, correct, seen, epoch_seconds,
                         val, test)
        row.update(regime.epoch_metrics())
        row.update(extras)
        run.history.append(row)
        on_epoch(row)
        if tracker is not None:
            tracker.observe(val.loss if math.isfinite(val.loss) else row["train_loss"])
        _checkpoint(config, trial_dir, regime.trained_model(model), data, trial, run, epoch)
        stop = regime.stop_reason()
        if stop is not None:
            run.status = stop
            break

    final_model = regime.trained_model(model)
    if save_model and trial_dir is not None:
        _save(final_model, trial_dir / "model.pt", config, data, trial)
    summary = _summary(trial, run, time.perf_counter() - started, regime, optimizer)
    summary["planned_steps"] = setup.total_steps
    evaluation_started = time.perf_counter()
    for probe in probes:
        with evaluating(model, optimizer, regime):
            summary.update(probe.final(final_model, trial_dir))
    summary["eval_seconds"] = time.perf_counter() - evaluation_started
    summary["wall_seconds"] = time.perf_counter() - started  # run_trial widens it to the whole trial
    return summary


def _train_epoch(setup: TrainingSetup, regime: Regime, schedule: schedules.Schedule,
                 tracker, run: _Progress) -> tuple[float, float, int]:
    model, optimizer = setup.model, setup.optimizer
    training(model, optimizer)
    loss_sum = torch.zeros((), device=setup.device)
    correct = torch.zeros((), device=setup.device)
    seen = 0
    nonfinite = False
    for x, y in setup.loader:
        progress = min(run.steps / setup.total_steps, 1.0)
        factor = tracker.factor if tracker is not None else 1.0
        if begin_step(setup, regime, lr=schedule(progress) * factor, progress=progress) is not None:
            break
        out = backward(setup, regime, x, y, progress=progress)
        value = out["loss"]
        # Poisson sampling can draw an empty batch (a NaN mean), which is still a step.
        if len(y) and not torch.isfinite(value):
            if not setup.world.distributed:
                run.status = "diverged"
                break
            nonfinite = True  # ranks stop together, after the next real (collective) step
        loss_sum += value * len(y)
        correct += (out["logits"].detach().argmax(1) == y).sum()
        seen += len(y)
        if regime.step(optimizer):
            run.steps += 1
            if setup.world.distributed and setup.world.any(nonfinite, setup.device):
                run.status = "diverged"
                break
        if regime.stop_reason() is not None:
            break
    if setup.world.distributed:
        loss_total, correct_total, seen_total = setup.world.sum(loss_sum, correct, seen,
                                                                device=setup.device)
        return loss_total, correct_total, int(seen_total)
    return loss_sum.item(), correct.item(), seen


def _epoch_row(trial: Trial, epoch: int, run: _Progress, optimizer, loss_sum: float,
               correct: float, seen: int, epoch_seconds: float, val: Evaluation,
               test: Evaluation) -> dict[str, Any]:
    row: dict[str, Any] = {
        "trial": trial.id, "epoch": epoch, "step": run.steps,
        "lr": optimizer.param_groups[0]["lr"],
        "train_loss": loss_sum / seen if seen else math.nan,
        "train_acc": correct / seen if seen else math.nan,
        "val_loss": val.loss, "val_acc": val.acc, "test_loss": test.loss, "test_acc": test.acc,
        "epoch_seconds": epoch_seconds,
        "samples_per_second": seen / epoch_seconds if epoch_seconds > 0 else math.nan,
    }
    row.update({f"test_acc_class{k}": v for k, v in enumerate(test.per_class_acc)})
    return row


def _selection_score(row: dict[str, Any], select: str) -> float:
    """Best checkpoint by validation accuracy (clean or robust); without a validation split,
    by the test-set number (then the ``_best`` fields are optimistic, as the README says)."""
    val_key, test_key = ("val_robust_acc", "robust_acc") if select == "robust" else ("val_acc", "test_acc")
    value = row.get(val_key, math.nan)
    return row[test_key] if not math.isfinite(value) else value


def _checkpoint(config: ExperimentConfig, trial_dir: Path | None, model, data: DataBundle,
                trial: Trial, run: _Progress, epoch: int) -> None:
    score = _selection_score(run.history[-1], config.evaluation.select)
    improved = score > run.best_val
    if improved:
        run.best_val, run.best_epoch = score, epoch
    if trial_dir is None or config.train.checkpoints == "none":
        return
    if improved and config.train.checkpoints in ("best", "both"):
        _save(model, trial_dir / "best.pt", config, data, trial, epoch=epoch)
    if config.train.checkpoints in ("last", "both"):
        _save(model, trial_dir / "last.pt", config, data, trial, epoch=epoch)


def _save(model, path: Path, config: ExperimentConfig, data: DataBundle, trial: Trial,
          epoch: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    models.save(model, path, spec=config.model, input_shape=data.input_shape,
                num_classes=data.num_classes, mean=data.mean, std=data.std,
                extra={"trial": trial.id, "epoch": epoch, "schedule": trial.schedule})


def _summary(trial: Trial, run: _Progress, wall_seconds: float, regime: Regime,
             optimizer) -> dict[str, Any]:
    last = run.history[-1] if run.history else {}
    best = next((r for r in run.history if r["epoch"] == run.best_epoch), {})
    per_class = [last[k] for k in sorted(last, key=_class_key) if k.startswith("test_acc_class")]
    summary = {
        **trial.describe(), "status": run.status, "epochs": len(run.history),
        "steps": run.steps, "clean_acc": last.get("test_acc"),
        "clean_acc_best": best.get("test_acc"), "best_epoch": run.best_epoch,
        "val_acc": last.get("val_acc"), "train_loss": last.get("train_loss"),
        "lr_final": optimizer.param_groups[0]["lr"],
        "train_seconds": run.train_seconds, "wall_seconds": wall_seconds,
        "samples_per_second": run.samples / run.train_seconds if run.train_seconds else None,
        "per_class_acc": per_class,
    }
    summary.update(regime.summary())
    return summary


def _class_key(name: str) -> tuple[int, str]:
    digits = name.removeprefix("test_acc_class")
    return (int(digits), name) if digits.isdigit() else (-1, name)
