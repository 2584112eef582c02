"""One trial of a config on several processes, as one data-parallel run (``robustlr train``).

    robustlr train experiments/x.yaml --nproc 4 --trial 2 --out runs/big
    torchrun --nproc-per-node 4 -m robustlr.cli train experiments/x.yaml --out runs/big

``train.batch_size`` is the global batch: each process trains on its shard of every batch
(torch DDP; Opacus' DP-DDP for the ``dp`` regime), so the schedule, the update and epsilon
are those of the same trial trained in one process (:mod:`robustlr.distributed`). Rank 0
alone writes the run folder, with the contract of ``robustlr run`` (config.yaml,
results.sqlite, summary.json with one record and ``world_size``, epochs.csv, report) and
each epoch row committed as it ends. A config of several trials needs ``--trial``; bad input
is one line and exit 2, a failed trial is recorded as ``failed`` and exits 1.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp

from robustlr import distributed
from robustlr.config import ExperimentConfig
from robustlr.errors import RunFailure
from robustlr.grid import Trial
from robustlr.results.store import FINAL_STATUSES, Store, StoreError
from robustlr.runs import folder
from robustlr.runs.events import EpochEnded, TrialEnded
from robustlr.runs.folder import DATABASE, RunError, finish
from robustlr.runs.runlog import run_log
from robustlr.runs.tasks import Recorder
from robustlr.training.trial import failed_record, run_trial

log = logging.getLogger("robustlr")


@dataclass(frozen=True)
class Job:
    config: ExperimentConfig
    trial: Trial
    position: int  # the trial's place in the grid
    run_dir: Path
    save_model: bool


class TrialFailed(RunFailure):
    """The trial raised on some rank; it is recorded as failed in the run folder."""


def choose_trial(trials: list, choice: str | None):
    """The trial ``--trial`` names (an id or a 0-based grid position) and its position."""
    listing = ", ".join(f"{i}={t.id}" for i, t in enumerate(trials[:6]))
    listing += ", ..." if len(trials) > 6 else ""
    if choice is None:
        if len(trials) == 1:
            return trials[0], 0
        raise RunError(f"CONFIG expands to {len(trials)} trials; train one with --trial INDEX "
                       f"or --trial ID ({listing})")
    if choice.isdigit():
        if int(choice) < len(trials):
            return trials[int(choice)], int(choice)
        raise RunError(f"--trial: index {choice} is out of range; CONFIG has {len(trials)} "
                       f"trials ({listing})")
    for position, trial in enumerate(trials):
        if trial.id == choice:
            return trial, position
    raise RunError(f"--trial: no trial {choice!r} in CONFIG ({listing})")


def open_run(config, trial, position: int, out: Path | None, world_size: int) -> Path:
    """Create the run folder (nothing before the config and the folder are valid)."""
    config, run_dir, store = folder.start(config, out=out)
    try:
        store.register(position, trial.id, trial.describe())
        store.start(trial.id)
        store.set_meta("world_size", str(world_size))
    finally:
        store.close()
    return run_dir


def rank_main(world, job: Job) -> None:
    """One rank's part: join the group, train, and (rank 0) record every epoch and the end
    through the same :class:`Recorder` and run log as ``robustlr run``."""
    device = distributed.rank_device(job.config.train.device, world)
    distributed.init_group(world, device)
    try:
        with contextlib.ExitStack() as stack:
            record = None
            if world.leader:
                store = Store(job.run_dir / DATABASE)
                stack.callback(store.close)
                store.claim_writer()
                stack.enter_context(run_log(job.run_dir))
                log.info("train %s: trial %s on %d processes", job.run_dir, job.trial.id, world.size)
                record = Recorder(store)
            _train(world, job, record)
    finally:
        distributed.close_group()


def _train(world, job: Job, record: Recorder | None) -> None:
    trial_id = job.trial.id
    on_epoch = (lambda row: record(EpochEnded(trial_id, row))) if record else (lambda row: None)
    try:
        summary = run_trial(job.config, job.trial, on_epoch=on_epoch, world=world,
                            trial_dir=job.run_dir / "trials" / trial_id,
                            save_model=job.save_model)
    except Exception as error:
        if record is not None:
            _record_failure(record, job, f"{type(error).__name__}: {error}", world.size)
        raise
    if record is not None:
        summary["world_size"] = world.size
        record(TrialEnded(trial_id, summary["status"], summary, None))
        finish(job.run_dir, record.store, job.config.name, job.config.report)
        log.info("train %s: trial %s finished: %s", job.run_dir, trial_id, summary["status"])


def _record_failure(record: Recorder, job: Job, message: str, world_size: int) -> None:
    record(TrialEnded(job.trial.id, "failed",
                      failed_record(job.trial, message, world_size=world_size), message))
    finish(job.run_dir, record.store, job.config.name, job.config.report)


def train_here(job_args: dict, nproc: int, out: Path | None) -> Path:
    """Create the folder, then train on ``nproc`` processes started here (1: this one)."""
    run_dir = open_run(job_args["config"], job_args["trial"], job_args["position"], out, nproc)
    job = Job(run_dir=run_dir, **job_args)
    try:
        if nproc == 1:
            rank_main(distributed.World(), job)
        else:
            distributed.launch(rank_main, nproc, job)
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        message = lines[-1] if lines else type(error).__name__
        store = Store(run_dir / DATABASE)
        try:
            if store.status(job.trial.id) not in FINAL_STATUSES:  # rank 0 could not record it
                _record_failure(Recorder(store), job, message, nproc)
        finally:
            store.close()
        raise TrialFailed(f"trial {job.trial.id} failed: {message} (recorded in {run_dir})") from None
    except StoreError:
        raise
    except Exception as error:
        raise TrialFailed(f"trial {job.trial.id} failed: {type(error).__name__}: {error} "
                          f"(recorded in {run_dir})") from None
    return run_dir


def train_under_launcher(job_args: dict, world, out: Path | None) -> Path | None:
    """Under torchrun every process runs the command: rank 0 creates the folder and tells
    the others where it is (or that it could not); returns the folder on rank 0."""
    distributed.init_group(world, distributed.rank_device(job_args["config"].train.device, world))
    outcome: list = [None, None]
    if world.leader:
        try:
            outcome[0] = open_run(job_args["config"], job_args["trial"], job_args["position"],
                                  out, world.size)
        except Exception as error:
            outcome[1] = error
    dist.broadcast_object_list(outcome, src=0)
    if outcome[1] is not None:
        distributed.close_group()
        if world.leader:
            raise outcome[1]
        sys.exit(2)
    rank_main(world, Job(run_dir=outcome[0], **job_args))
    return outcome[0] if world.leader else None


__all__ = ["Job", "TrialFailed", "choose_trial", "rank_main", "train_here", "train_under_launcher"]
