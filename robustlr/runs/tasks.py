"""One trial as a unit of work for any backend, and the parent's recorder of its events.

``run_task`` runs a trial wherever it is called (a pool worker, a Ray task, the parent) and
reports through ``emit``; the :class:`Recorder` applies those events in the parent, the
database's only writer (rank 0 under ``robustlr train``).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from robustlr.config import ExperimentConfig
from robustlr.grid import Trial
from robustlr.nofollow import refuse_symlink
from robustlr.results.store import INTERRUPTED, Store, StoreError
from robustlr.runs.events import EpochEnded, Event, TrialEnded
from robustlr.runs.progress import Progress
from robustlr.training.trial import failed_record, run_trial

log = logging.getLogger("robustlr")


@dataclass(frozen=True)
class TrialTask:
    config: ExperimentConfig
    trial: Trial
    run_dir: Path
    save_model: bool


def run_task(task: TrialTask, emit: Callable[[Event], None]) -> None:
    """Run one trial, emitting an :class:`EpochEnded` per epoch and a :class:`TrialEnded`.
    Any exception becomes a ``failed`` trial; the grid goes on."""
    trial_id = task.trial.id
    try:
        for folder in (task.run_dir / "trials", task.run_dir / "trials" / trial_id):
            refuse_symlink(folder)  # checkpoints go there: never through a planted link
        summary = run_trial(task.config, task.trial,
                            on_epoch=lambda row: emit(EpochEnded(trial_id, row)),
                            trial_dir=task.run_dir / "trials" / trial_id,
                            save_model=task.save_model)
        emit(TrialEnded(trial_id, summary["status"], summary))
    except StoreError:
        raise  # the database refused a row (disk full): the trial did not fail, the run did
    except Exception as error:  # recorded, not raised: one trial must not end the grid
        message = f"{type(error).__name__}: {error}"
        log.debug("trial %s failed:\n%s", trial_id, traceback.format_exc())
        emit(TrialEnded(trial_id, "failed", failed_record(task.trial, message), message))


def interrupted(task: TrialTask, reason: str) -> TrialEnded:
    """The end of a trial whose worker died before it could report one. Not a failure of the
    trial (a kill, the OOM killer, a lost node): the status is not final and ``--resume``
    runs the trial again."""
    message = f"interrupted: {reason}; --resume runs it again"
    return TrialEnded(task.trial.id, INTERRUPTED, failed_record(task.trial, message,
                                                                status=INTERRUPTED), message)


class Recorder:
    """Applies trial events to the store and the progress display, then tells the observers
    (trackers) about each finished trial, after its rows are committed. An interrupted trial
    is not finished: observers hear of it when a resume completes it, once."""

    def __init__(self, store: Store, progress=None, observers: tuple = ()):
        self.store, self.observers = store, observers
        self.progress = progress if progress is not None else Progress(enabled=False)
        self.finished = 0
        self.interrupted = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, EpochEnded):
            self.store.add_epoch(event.trial, event.row["epoch"], event.row)
            self.progress.epoch(event.trial)
            return
        self.store.finish(event.trial, event.status, event.summary, event.error)
        if event.status == "failed":  # `robustlr run` points users here when it exits 1
            log.warning("trial %s failed: %s", event.trial, event.error)
        self.finished += 1
        self.progress.trial(event.trial, event.status)
        if event.status == INTERRUPTED:
            self.interrupted += 1
            return
        for observer in self.observers:
            observer.trial_finished(event.trial, event.summary, self.store.epochs(event.trial))
