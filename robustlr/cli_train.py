"""``robustlr train``: one trial of a config on several processes, as one data-parallel run.

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

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

log = logging.getLogger("robustlr")


@dataclass(frozen=True)
class Job:
    config: object  # ExperimentConfig
    trial: object  # grid.Trial
    position: int  # the trial's place in the grid
    run_dir: Path
    save_model: bool


class TrialFailed(RuntimeError):
    """The trial raised on some rank; it is recorded as failed in the run folder."""


def choose_trial(trials: list, choice: str | None):
    """The trial ``--trial`` names (an id or a 0-based grid position) and its position."""
    from .run import RunError

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
    from . import run as run_module

    config, run_dir, store = run_module.start(config, out=out)
    try:
        store.register(position, trial.id, trial.describe())
        store.start(trial.id)
        store.set_meta("world_size", str(world_size))
    finally:
        store.close()
    return run_dir


def _stage(job: Job, world):
    """Poisoned/filtered data prepared once (rank 0) and sent to every rank; clean data is
    deterministic and loaded by each rank itself."""
    import torch.distributed as dist

    from . import poisoning
    from .runner import _prepare_data
    from .spec import is_none

    clean = is_none(job.trial.poison) and is_none(job.trial.filter)
    if clean or world.leader:
        stage = poisoning.prepare(job.config, job.trial, _prepare_data(job.config.data, job.trial.seed))
    if clean or not world.distributed:
        return stage
    shared = [stage.bundle if world.leader else None]
    dist.broadcast_object_list(shared, src=0)
    return stage if world.leader else poisoning.PoisonStage(shared[0], None, {})


def rank_main(world, job: Job) -> None:
    """One rank's part: join the group, train, and (rank 0) record every epoch and the end."""
    from . import distributed
    from .probes import build_probes
    from .run import DATABASE, finish
    from .store import Store
    from .trainer import train_trial

    device = distributed.rank_device(job.config.train.device, world)
    distributed.init_group(world, device)
    store = handler = None
    try:
        stage = _stage(job, world)
        if world.leader:
            store = Store(job.run_dir / DATABASE)
            store.claim_writer()
            handler = logging.FileHandler(job.run_dir / "run.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False  # ART configures the root logger; the run log is enough
            log.info("train %s: trial %s on %d processes", job.run_dir, job.trial.id, world.size)
        record = (lambda row: store.add_epoch(job.trial.id, row["epoch"], row)) if store else (lambda row: None)
        try:
            summary = train_trial(
                job.config, job.trial, stage.bundle, on_epoch=record, world=world,
                trial_dir=job.run_dir / "trials" / job.trial.id if world.leader else None,
                save_model=job.save_model and world.leader,
                probes=build_probes(job.config, job.trial, stage.bundle, stage.poison)
                if world.leader else [])
        except Exception as error:
            if store is not None:
                _record_failure(store, job, f"{type(error).__name__}: {error}", world.size)
            raise
        if store is not None:
            summary.update(stage.summary)
            summary["world_size"] = world.size
            store.finish(job.trial.id, summary["status"], summary, None)
            finish(job.run_dir, store, job.config.name, job.config.report)
            log.info("train %s: trial %s finished: %s", job.run_dir, job.trial.id,
                     summary["status"])
    finally:
        if store is not None:
            store.close()
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        distributed.close_group()


def _record_failure(store, job: Job, message: str, world_size: int) -> None:
    from .run import finish

    store.finish(job.trial.id, "failed", {**job.trial.describe(), "status": "failed",
                                          "error": message, "world_size": world_size}, message)
    finish(job.run_dir, store, job.config.name, job.config.report)


def train_here(job_args: dict, nproc: int, out: Path | None) -> Path:
    """Create the folder, then train on ``nproc`` processes started here (1: this one)."""
    import torch.multiprocessing as mp

    from . import distributed
    from .run import DATABASE
    from .store import FINAL_STATUSES, Store, StoreError

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
                _record_failure(store, job, message, nproc)
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
    import torch.distributed as dist

    from . import distributed

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


def _fail(message: str, code: int = 2) -> None:
    if code == 2:
        from .cli import fail  # imported when called: cli.py imports this module

        fail(message)
    click.echo(f"robustlr: error: {message}", err=True)
    sys.exit(code)


@click.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--nproc", type=click.IntRange(min=1), default=None,
              help="Processes training the trial together (default 1; under torchrun its "
                   "WORLD_SIZE). Backend gloo on CPU, nccl on GPUs, one GPU per process.")
@click.option("--out", type=click.Path(path_type=Path), help="Run folder (default runs/NAME-TIME).")
@click.option("--trial", "choice",
              help="The trial to train when CONFIG expands to several: its 0-based position "
                   "in the grid or its id.")
@click.option("--save-model", is_flag=True, help="Save the final model as trials/ID/model.pt.")
def train(config: Path, nproc: int | None, out: Path | None, choice: str | None,
          save_model: bool) -> None:
    """Train ONE trial of CONFIG on N processes (data parallel) and write a run folder."""
    from . import config as config_module
    from . import distributed
    from . import run as run_module
    from .grid import expand
    from .spec import SpecError

    world = distributed.from_env()
    if world is not None and nproc not in (None, world.size):
        _fail(f"--nproc {nproc}: under torchrun the processes are its own "
              f"(WORLD_SIZE={world.size}); leave --nproc out")
    try:
        loaded = config_module.load(config)
        trial, position = choose_trial(expand(loaded), choice)
        distributed.check_device(loaded.train.device, nproc or 1 if world is None else
                                 int(os.environ.get("LOCAL_WORLD_SIZE", world.size)))
        job_args = {"config": loaded, "trial": trial, "position": position,
                    "save_model": save_model}
        run_dir = (train_under_launcher(job_args, world, out) if world is not None
                   else train_here(job_args, nproc or 1, out))
    except (config_module.ConfigError, run_module.RunError, SpecError) as error:
        if world is not None and not world.leader:
            sys.exit(2)  # under torchrun rank 0 says it once
        _fail(str(error))
    except distributed.DeviceError as error:
        _fail(f"train.device: {error}")
    except (run_module.StoreError, TrialFailed) as error:
        _fail(str(error), code=1)
    if run_dir is not None:
        click.echo(f"run folder: {run_dir}\nreport: {run_dir / 'report.html'}")


__all__ = ["train", "choose_trial", "rank_main"]
