"""Run a grid: register its trials, skip the finished ones, and hand the rest to a backend
(the local process pool, or Ray); the parent is the database's only writer."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from robustlr.config import ExperimentConfig
from robustlr.grid import Trial, expand
from robustlr.results.store import FINAL_STATUSES, Store
from robustlr.runs.pool import run_pool
from robustlr.runs.tasks import Recorder, TrialTask, run_task


def pending_trials(config: ExperimentConfig, store: Store) -> list[Trial]:
    trials = expand(config)
    for position, trial in enumerate(trials):
        store.register(position, trial.id, trial.describe())
    return [t for t in trials if store.status(t.id) not in FINAL_STATUSES]


BACKENDS = ("local", "ray")


def run_grid(config: ExperimentConfig, run_dir: Path, store: Store, *, workers: int,
             save_models: bool, progress, backend: str = "local", address: str | None = None,
             observers: tuple = ()) -> None:
    todo = pending_trials(config, store)
    progress.start(len(todo), len(todo) * config.train.epochs)
    for trial in todo:
        store.start(trial.id)
    tasks = [TrialTask(config, trial, run_dir, save_models) for trial in todo]
    record = Recorder(store, progress, observers)
    if backend == "ray":
        from robustlr.runs.ray_backend import run_ray  # ray is an optional extra

        run_ray(tasks, record, address=address, workers=workers)
        return
    if workers <= 1 or len(tasks) <= 1:
        torch.set_num_threads(1)
        for task in tasks:
            run_task(task, record)
        return
    run_pool(tasks, workers, record)


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))
