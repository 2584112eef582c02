"""``robustlr train``: one trial of a config on several processes (see
:mod:`robustlr.runs.ddp`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from robustlr.errors import InputError


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
    # torch-heavy: imported when the command runs, so --help stays fast
    from robustlr import distributed, experiment
    from robustlr.errors import RobustlrError
    from robustlr.grid import expand
    from robustlr.runs.ddp import choose_trial, train_here, train_under_launcher

    world = distributed.from_env()
    if world is not None and nproc not in (None, world.size):
        raise InputError(f"--nproc {nproc}: under torchrun the processes are its own "
                         f"(WORLD_SIZE={world.size}); leave --nproc out")
    try:
        loaded = experiment.load(config)
        trial, position = choose_trial(expand(loaded), choice)
        try:
            distributed.check_device(loaded.train.device, nproc or 1 if world is None else
                                     int(os.environ.get("LOCAL_WORLD_SIZE", world.size)))
        except distributed.DeviceError as error:
            raise InputError(f"train.device: {error}") from None
        job_args = {"config": loaded, "trial": trial, "position": position,
                    "save_model": save_model}
        run_dir = (train_under_launcher(job_args, world, out) if world is not None
                   else train_here(job_args, nproc or 1, out))
    except RobustlrError as error:
        if error.exit_code == 2 and world is not None and not world.leader:
            sys.exit(2)  # under torchrun rank 0 says it once
        raise
    if run_dir is not None:
        click.echo(f"run folder: {run_dir}\nreport: {run_dir / 'report.html'}")
