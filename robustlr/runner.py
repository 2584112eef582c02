"""Run a grid of trials in a local process pool; the parent is the database's only writer.

Workers stream each finished epoch and, last, the trial's summary through one queue, so the
parent writes every epoch as it ends (a kill loses at most the epochs in flight) and the
summary is never written before the trial's last epoch row.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any, Callable

import torch

from . import data as datasets
from .config import ExperimentConfig
from .grid import Trial, expand
from .store import FINAL_STATUSES, Store, StoreError

log = logging.getLogger("robustlr")


@dataclass(frozen=True)
class TrialTask:
    config: ExperimentConfig
    trial: Trial
    run_dir: Path
    save_model: bool


@functools.lru_cache(maxsize=4)
def _prepare_data(data_config, seed: int) -> datasets.DataBundle:
    return datasets.prepare(data_config, seed=seed)


def execute(task: TrialTask, emit: Callable[[tuple], None]) -> None:
    """Run one trial, sending ('epoch', id, row) events and finally ('done', id, status,
    summary, error). Any exception becomes a ``failed`` trial; the grid goes on."""
    from . import poisoning
    from .probes import build_probes
    from .trainer import train_trial

    trial_id = task.trial.id
    trial_dir = task.run_dir / "trials" / trial_id
    try:
        stage = poisoning.prepare(task.config, task.trial,
                                  _prepare_data(task.config.data, task.trial.seed))
        summary = train_trial(
            task.config, task.trial, stage.bundle,
            on_epoch=lambda row: emit(("epoch", trial_id, row)),
            trial_dir=trial_dir, save_model=task.save_model,
            probes=build_probes(task.config, task.trial, stage.bundle, stage.poison))
        summary.update(stage.summary)
        emit(("done", trial_id, summary["status"], summary, None))
    except StoreError:
        raise  # the database refused a row (disk full): the trial did not fail, the run did
    except Exception as error:  # recorded, not raised: one trial must not end the grid
        message = f"{type(error).__name__}: {error}"
        log.debug("trial %s failed:\n%s", trial_id, traceback.format_exc())
        emit(("done", trial_id, "failed", {**task.trial.describe(), "status": "failed",
                                           "error": message}, message))


_QUEUE = None


def _init_worker(queue) -> None:
    global _QUEUE
    _QUEUE = queue
    torch.set_num_threads(1)  # trials in parallel beat threads inside one (FINDINGS)


def _execute_in_worker(task: TrialTask) -> None:
    execute(task, _QUEUE.put)


class _Recorder:
    """Applies trial events to the store and the progress display, then tells the observers
    (trackers) about each finished trial, after its rows are committed."""

    def __init__(self, store: Store, progress, observers: tuple = ()):
        self.store, self.progress, self.observers = store, progress, observers
        self.finished = 0

    def __call__(self, event: tuple) -> None:
        kind, trial_id = event[0], event[1]
        if kind == "epoch":
            self.store.add_epoch(trial_id, event[2]["epoch"], event[2])
            self.progress.epoch()
        else:
            _, _, status, summary, error = event
            self.store.finish(trial_id, status, summary, error)
            self.finished += 1
            self.progress.trial(trial_id, status)
            for observer in self.observers:
                observer.trial_finished(trial_id, summary, self.store.epochs(trial_id))


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
    record = _Recorder(store, progress, observers)
    if backend == "ray":
        from .ray_backend import run_ray

        run_ray(tasks, record, address=address, workers=workers)
        return
    if workers <= 1 or len(tasks) <= 1:
        torch.set_num_threads(1)
        for task in tasks:
            execute(task, record)
        return
    _run_pool(tasks, workers, record)


def _run_pool(tasks: list[TrialTask], workers: int, record: _Recorder) -> None:
    context = _pool_context()
    queue = context.Queue()
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context,
                               initializer=_init_worker, initargs=(queue,))
    try:
        _collect(pool, tasks, queue, record)
    except BaseException:
        # the recorder failed (disk full) or the user interrupted: stop the workers now, not
        # after every remaining trial whose results the database could not take anyway
        _abandon(pool)
        raise
    pool.shutdown(wait=True)
    _drain(queue, record)


def _collect(pool: ProcessPoolExecutor, tasks: list[TrialTask], queue, record: _Recorder) -> None:
    futures = {pool.submit(_execute_in_worker, task): task for task in tasks}
    while record.finished < len(tasks):
        try:
            record(queue.get(timeout=0.5))
            continue
        except Empty:
            pass
        done, _ = wait(futures, timeout=0, return_when=FIRST_COMPLETED)
        for future in done:
            task = futures.pop(future)
            error = future.exception()
            if error is not None:  # the worker died (killed, out of memory)
                _drain(queue, record)
                message = f"worker crashed: {type(error).__name__}: {error}"
                record(("done", task.trial.id, "failed",
                        {**task.trial.describe(), "status": "failed", "error": message},
                        message))


def _abandon(pool: ProcessPoolExecutor) -> None:
    # running tasks cannot be cancelled and the executor has no public way to stop its
    # workers before Python 3.14's terminate_workers(); shutdown() forgets them, so look first
    workers = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        process.terminate()


def _pool_context():
    """fork where it is safe (no CUDA context yet: the parent has imported everything, so a
    worker starts at once); else a forkserver that imports the trainer once, since a forked
    CUDA context breaks in the child."""
    if not torch.cuda.is_initialized():
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["robustlr.trainer", "robustlr.probes"])
    return context


def _drain(queue, record: _Recorder) -> None:
    while True:
        try:
            record(queue.get(timeout=0.1))
        except Empty:
            return


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))
