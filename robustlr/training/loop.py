"""The one training loop. Regimes decide how a batch becomes a loss and an update; the loop
owns the schedule clock (optimizer steps actually taken), evaluation, checkpoints, metrics
and timing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustlr import models, schedules
from robustlr.catalog import AVERAGING
from robustlr.config import ExperimentConfig
from robustlr.config import dump as dump_config
from robustlr.data import DataBundle
from robustlr.data.provenance import data_record
from robustlr.distributed import World
from robustlr.errors import InputError
from robustlr.grid import Trial
from robustlr.modes import evaluating, training
from robustlr.regimes import Regime, TrainingSetup
from robustlr.regimes.dp_settings import settings_of
from robustlr.spec import is_none
from robustlr.training import checkpoint, selection
from robustlr.training.averaging import Averager, attach
from robustlr.training.evaluation import Evaluation, evaluate
from robustlr.training.probes import Probe
from robustlr.training.recipe import Recipe
from robustlr.training.setup import backward, begin_step, prepare
from robustlr.training.slices import slice_fields

EpochCallback = Callable[[dict[str, Any]], None]
log = logging.getLogger("robustlr")


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

    def state(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


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
                       total_steps=lambda steps_per_epoch: config.train.epochs * steps_per_epoch,
                       warmup=getattr(schedule, "warmup", 0.0) if schedule.optimizer_based else None)
    setup, regime, recipe, data = prepared.setup, prepared.regime, prepared.recipe, prepared.data
    private = settings_of(trial.regime) is not None
    select_robust = selection.selects_robust(config.evaluation, regime.loss_kind)
    # torch's schedulers are tabulated over the planned steps at the trial's base LR
    schedule = schedule.planned(total_steps=setup.total_steps, base_lr=config.train.lr * trial.lr_scale)
    model, optimizer = setup.model, setup.optimizer
    plain = regime.trained_model(model)
    averager = None if is_none(trial.averaging) else attach(AVERAGING.build(trial.averaging), plain)
    if world.distributed:  # only the training step sees the wrapper; evaluation the module
        setup.model = regime.data_parallel(setup)
    if config.train.compile:  # the step alone; evaluation and saving use the plain module
        setup.model = torch.compile(setup.model)  # type: ignore[assignment]
    probes = probes or []
    run = _Progress()
    parts = checkpoint.Parts(model=plain, optimizer=optimizer, regime=regime, recipe=recipe,
                             generator=setup.generator, device=setup.device, tracker=tracker,
                             averager=averager, probes=probes)
    resume_dir, key = _resume_dir(config, trial, trial_dir, world)
    first_epoch = _resume(resume_dir, key, parts, run, on_epoch)
    writer = checkpoint.Writer(resume_dir) if resume_dir is not None else None

    for epoch in range(first_epoch, config.train.epochs + 1):
        epoch_started = time.perf_counter()
        loss_sum, correct, seen = _train_epoch(setup, regime, recipe, schedule, tracker, run,
                                               averager)
        epoch_seconds = time.perf_counter() - epoch_started
        run.train_seconds += epoch_seconds
        run.samples += seen
        if run.status != "ok":
            break
        if averager is not None and not averager.per_step:
            averager.update(progress=min(run.steps / setup.total_steps, 1.0))
        with evaluating(model, optimizer, regime):
            val = evaluate(model, *data.val, num_classes=data.num_classes,
                           batch_size=config.evaluation.batch_size)
            test = evaluate(model, *data.test, num_classes=data.num_classes,
                            batch_size=config.evaluation.batch_size)
            extras = {name: value for probe in probes for name, value in probe.epoch(plain).items()}
            if averager is not None:
                extras.update(_averaged_row(averager, plain, setup, data, probes, config))
        row = _epoch_row(trial, epoch, run, optimizer, loss_sum, correct, seen, epoch_seconds,
                         val, test)
        row.update(regime.epoch_metrics())
        row.update(extras)
        train_loss = row["train_loss"]
        if private:  # exact statistics of the private training batches, without noise
            row.update(train_loss=math.nan, train_acc=math.nan)
        run.history.append(row)
        on_epoch(row)
        if tracker is not None and (math.isfinite(val.loss) or not private):
            tracker.observe(val.loss if math.isfinite(val.loss) else train_loss)
        _checkpoint(config, trial_dir, plain, data, trial, run, epoch, private=private,
                    robust=select_robust)
        stop = regime.stop_reason()
        if stop is not None:
            run.status = stop
            break
        if writer is not None and epoch % (config.train.checkpoint_every or 1) == 0:
            writer.save(epoch=epoch, parts=parts, progress=run.state(), key=key)

    final_model = regime.trained_model(model)
    if save_model and trial_dir is not None:
        _save(final_model, trial_dir / "model.pt", config, data, trial, private=private)
        if averager is not None and averager.ready:
            with averager.swapped_in(final_model, setup.loader,
                                     generator=setup.generator) as averaged:
                _save(averaged, trial_dir / "model_avg.pt", config, data, trial, private=private)
    summary = _summary(trial, run, time.perf_counter() - started, regime, optimizer)
    summary["planned_steps"] = setup.total_steps
    summary["test_examples"] = len(data.test[1])  # what one example's worth of clean_acc is
    summary["best_epoch_by"] = _best_epoch_by(run, select_robust)
    if averager is not None:
        summary.update(_averaged_summary(run.history))
    evaluation_started = time.perf_counter()
    for probe in probes:
        with evaluating(model, optimizer, regime):
            summary.update(probe.final(final_model, trial_dir))
    summary["eval_seconds"] = time.perf_counter() - evaluation_started
    summary.update(slice_fields(summary))
    summary.update(_validation_fields(config, data, regime, summary))
    summary["wall_seconds"] = time.perf_counter() - started  # run_trial widens it to the whole trial
    if writer is not None:
        writer.wait()
        checkpoint.clear(writer.directory)
    return summary


def _resume_dir(config: ExperimentConfig, trial: Trial, trial_dir: Path | None,
                world: World) -> tuple[Path | None, str]:
    if config.train.checkpoint_every is None or trial_dir is None:
        return None, ""
    if world.distributed:
        raise InputError("train.checkpoint_every: resume checkpoints are not supported under "
                         "train --nproc yet; leave it out")
    return trial_dir / "resume", checkpoint.fingerprint(dump_config(config), trial.id)


def _resume(resume_dir: Path | None, key: str, parts: checkpoint.Parts, run: _Progress,
            on_epoch: EpochCallback) -> int:
    """Continue from the newest complete checkpoint, if any: restore every part, re-emit the
    epoch rows so far (the store dropped the interrupted attempt's rows); returns the first
    epoch to train."""
    state = checkpoint.load(resume_dir, key=key) if resume_dir is not None else None
    if state is None:
        return 1
    checkpoint.restore(state, parts)
    for name, value in state["progress"].items():
        setattr(run, name, value)
    for row in run.history:
        on_epoch(row)
    log.info("trial resumed after epoch %d from %s", state["epoch"], resume_dir)
    return state["epoch"] + 1


def _averaged_row(averager: Averager, model, setup: TrainingSetup, data: DataBundle,
                  probes: list[Probe], config: ExperimentConfig) -> dict[str, float]:
    """The averaged weights' clean test accuracy and probe numbers (``avg_*``), measured
    without consuming the global RNG, so the raw trajectory is that of a run without
    averaging."""
    if not averager.ready:
        return {"avg_test_acc": math.nan}
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            averager.swapped_in(model, setup.loader, generator=setup.generator) as averaged:
        averaged.eval()
        row = {"avg_test_acc": evaluate(averaged, *data.test, num_classes=data.num_classes,
                                        batch_size=config.evaluation.batch_size).acc}
        for probe in probes:
            row.update(probe.averaged(averaged))
    return row


def _averaged_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    last = history[-1] if history else {}
    robust = [row["avg_monitor_robust_acc"] for row in history
              if math.isfinite(row.get("avg_monitor_robust_acc", math.nan))]
    summary = {"avg_clean_acc": last.get("avg_test_acc")}
    if robust:
        summary.update(avg_monitor_robust_acc=last.get("avg_monitor_robust_acc"),
                       avg_monitor_robust_acc_max=max(robust),
                       avg_robust_gap=max(robust) - last.get("avg_monitor_robust_acc", math.nan))
    return summary


def _train_epoch(setup: TrainingSetup, regime: Regime, recipe: Recipe,
                 schedule: schedules.Schedule, tracker, run: _Progress,
                 averager: Averager | None) -> tuple[float, float, int]:
    model, optimizer = setup.model, setup.optimizer
    training(model, optimizer)
    parameters = list(model.parameters())
    loss_sum = torch.zeros((), device=setup.device)
    correct = torch.zeros((), device=setup.device)
    seen = 0
    nonfinite = False
    last = len(setup.loader) - 1
    for index, (x, y) in enumerate(setup.loader):
        progress = min(run.steps / setup.total_steps, 1.0)
        factor = tracker.factor if tracker is not None else 1.0
        if begin_step(setup, regime, lr=schedule(progress) * factor, progress=progress) is not None:
            break
        out = backward(setup, regime, x, y, progress=progress, recipe=recipe)
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
        if recipe.ready(last=index == last) and recipe.step(optimizer, regime, parameters):
            run.steps += 1
            if averager is not None and averager.per_step:
                averager.update(progress=min(run.steps / setup.total_steps, 1.0))
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


def _selection_keys(robust: bool) -> tuple[str, str]:
    return (selection.ROBUST, "monitor_robust_acc") if robust else (selection.CLEAN, "test_acc")


def _selection_score(row: dict[str, Any], robust: bool) -> float:
    """Best checkpoint by validation accuracy (clean or robust); without a validation split,
    by the test-set number (then the ``_best`` fields are optimistic, as the README says)."""
    val_key, test_key = _selection_keys(robust)
    value = row.get(val_key, math.nan)
    return row[test_key] if not math.isfinite(value) else value


def _best_epoch_by(run: _Progress, robust: bool) -> str:
    """The field that chose the best epoch: the validation one, else its test stand-in."""
    val_key, test_key = _selection_keys(robust)
    measured = any(math.isfinite(row.get(val_key, math.nan)) for row in run.history)
    return val_key if measured else test_key


def _checkpoint(config: ExperimentConfig, trial_dir: Path | None, model, data: DataBundle,
                trial: Trial, run: _Progress, epoch: int, *, private: bool, robust: bool) -> None:
    score = _selection_score(run.history[-1], robust)
    improved = score > run.best_val
    if improved:
        run.best_val, run.best_epoch = score, epoch
    if trial_dir is None or config.train.checkpoints == "none":
        return
    if improved and config.train.checkpoints in ("best", "both"):
        _save(model, trial_dir / "best.pt", config, data, trial, epoch=epoch, private=private)
    if config.train.checkpoints in ("last", "both"):
        _save(model, trial_dir / "last.pt", config, data, trial, epoch=epoch, private=private)


# What an epoch chosen on validation accuracy releases (the probes' best-robust ones too)
CHOSEN_ON_VALIDATION = ("clean_acc_best", "best_epoch", "robust_acc_best",
                        "monitor_robust_acc_best", "best_robust_epoch", "robust_gap", "cascade_best")


def _validation_fields(config: ExperimentConfig, data: DataBundle, regime: Regime,
                       summary: dict[str, Any]) -> dict[str, Any]:
    """The validation split's size (the report's private LR choice counts on it) and whether
    it is public. Under DP an epoch chosen exactly on a private validation split has no
    epsilon, so the fields it chose are withheld (None); docs/privacy-ledger.md."""
    size = len(data.val[1])
    fields: dict[str, Any] = {"val_examples": size,
                              "public_validation": config.data.public_validation}
    if regime.name == "dp" and size and not config.data.public_validation:
        fields.update({key: None for key in CHOSEN_ON_VALIDATION if key in summary})
    return fields


def _save(model, path: Path, config: ExperimentConfig, data: DataBundle, trial: Trial,
          epoch: int | None = None, *, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    models.save(model, path, spec=config.model, input_shape=data.input_shape,
                num_classes=data.num_classes, mean=data.mean, std=data.std,
                extra={"trial": trial.id, "epoch": epoch, "schedule": trial.schedule,
                       # `robustlr attack` evaluates on this split and refuses another one
                       "data": data_record(config.data, data, seed=trial.seed, private=private)})


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
