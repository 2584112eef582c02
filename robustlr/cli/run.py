"""``robustlr run``: train a grid and write a run folder."""

from __future__ import annotations

from pathlib import Path

import click

from robustlr.errors import InputError, RunFailure


@click.command()
@click.argument("config", required=False, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Run folder (default runs/NAME-TIME).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Trials trained in parallel, one process each (default: CPU cores, at most 8).")
@click.option("--resume", type=click.Path(path_type=Path), help="Finish what is missing in this run folder.")
@click.option("--quick", is_flag=True, help="Every schedule and regime, fewer epochs and less data.")
@click.option("--save-models", is_flag=True, help="Save each trial's final model as trials/ID/model.pt.")
@click.option("--no-progress", is_flag=True, help="No progress display.")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where trials run: a local process pool, or Ray tasks (robustlr[ray]).")
@click.option("--address", help="Ray cluster to join (default: start a local one); needs --backend ray.")
@click.option("--track", type=click.Choice(["mlflow"]),
              help="Log every trial as a tracker run (robustlr[mlflow]).")
@click.option("--tracking-uri", help="Tracker store (default sqlite:///mlflow.db); needs --track.")
@click.option("--max-trials", type=click.IntRange(min=1), default=None,
              help="Run a grid of up to N trials (default limit: 10,000; a larger grid is "
                   "refused before any folder exists).")
@click.option("--allow-failures", is_flag=True,
              help="Exit 0 even when trials failed (exploratory grids); they stay in the report.")
def run(config: Path | None, out: Path | None, workers: int | None, resume: Path | None, quick: bool,
        save_models: bool, no_progress: bool, backend: str, address: str | None,
        track: str | None, tracking_uri: str | None, max_trials: int | None,
        allow_failures: bool) -> None:
    """Train the grid in CONFIG (default: the packaged digits audit) and write a run folder.

    Exits 1 when any trial failed (raised an error), unless --allow-failures."""
    if address is not None and backend != "ray":
        raise InputError("--address: only with --backend ray")
    if tracking_uri is not None and track is None:
        raise InputError("--tracking-uri: only with --track mlflow")
    # torch-heavy: imported when the command runs, so --help stays fast
    from robustlr import config as config_module
    from robustlr import experiment
    from robustlr.runs import folder
    from robustlr.runs.grid_runner import default_workers

    if config is None and resume is None:
        config = config_module.default_path()
    loaded = experiment.load(config) if config is not None else None
    if quick and loaded is not None:
        loaded = folder.quick(loaded)
    run_dir = folder.run_in_folder(loaded, out=out, resume=resume, workers=workers or default_workers(),
                             save_models=save_models, show_progress=not no_progress,
                             backend=backend, address=address, track=track,
                             tracking_uri=tracking_uri,
                             max_trials=max_trials or folder.MAX_TRIALS)
    counts = folder.trial_counts(run_dir)
    failed, total = counts.get("failed", 0), sum(counts.values())
    click.echo(f"run folder: {run_dir}\nreport: {run_dir / 'report.html'}")
    click.echo(f"trials: {total - failed} of {total} finished"
               + (f", {failed} failed (errors in {run_dir / 'run.log'})" if failed else ""))
    if failed and not allow_failures:
        raise RunFailure(f"{failed} of {total} trials failed; see {run_dir / 'run.log'} "
                         "(--allow-failures accepts failed trials)")
