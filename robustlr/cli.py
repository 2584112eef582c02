"""The ``robustlr`` command line. Bad input is one line on stderr and exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import config as config_module
from .spec import SpecError


def fail(message: str) -> None:
    click.echo(f"robustlr: error: {message}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="robustlr")
def main() -> None:
    """Learning-rate schedules as the experimental variable under adversarial, privacy and
    poisoning threats."""


@main.command()
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
def run(config: Path | None, out: Path | None, workers: int | None, resume: Path | None, quick: bool,
        save_models: bool, no_progress: bool, backend: str, address: str | None,
        track: str | None, tracking_uri: str | None) -> None:
    """Train the grid in CONFIG (default: the packaged digits audit) and write a run folder."""
    from . import run as run_module

    if address is not None and backend != "ray":
        fail("--address: only with --backend ray")
    if tracking_uri is not None and track is None:
        fail("--tracking-uri: only with --track mlflow")
    try:
        if config is None and resume is None:
            config = config_module.default_path()
        loaded = config_module.load(config) if config is not None else None
        if quick and loaded is not None:
            loaded = run_module.quick(loaded)
        from .runner import default_workers

        run_dir = run_module.execute(loaded, out=out, resume=resume,
                                     workers=workers or default_workers(),
                                     save_models=save_models, show_progress=not no_progress,
                                     backend=backend, address=address, track=track,
                                     tracking_uri=tracking_uri)
    except (config_module.ConfigError, run_module.RunError, SpecError) as error:
        fail(str(error))
    except run_module.StoreError as error:
        click.echo(f"robustlr: error: {error}", err=True)
        sys.exit(1)
    click.echo(f"run folder: {run_dir}\nreport: {run_dir / 'report.html'}")


@main.group(invoke_without_command=True)
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="Draw every schedule at its defaults into this PNG.")
@click.pass_context
def schedules(context: click.Context, plot_path: Path | None) -> None:
    """List every schedule with its parameters and defaults."""
    if context.invoked_subcommand is not None:
        return
    from . import schedules as schedule_module

    for name, summary, parameters in schedule_module.describe():
        params = ", ".join(f"{k}={v!r}" for k, v in parameters.items())
        click.echo(f"{name}({params})\n    {summary}")
    if plot_path is not None:
        schedule_module.plot([name for name, _, _ in schedule_module.describe()], plot_path)
        click.echo(f"plot: {plot_path}")


@schedules.command("show")
@click.argument("spec")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="Evenly spaced optimizer steps to print.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), help="Also draw it into this PNG.")
def schedules_show(spec: str, steps: int, plot_path: Path | None) -> None:
    """Print SPEC's LR multiplier at each of N steps as CSV (step,progress,multiplier)."""
    from . import schedules as schedule_module

    try:
        schedule = schedule_module.parse(spec)
    except SpecError as error:
        fail(str(error))
    click.echo("step,progress,multiplier")
    for step, value in enumerate(schedule_module.values(schedule, steps)):
        click.echo(f"{step},{step / steps:.6g},{value:.8g}")
    if plot_path is not None:
        schedule_module.plot([spec], plot_path)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--rank-by", help="Rank the groups by this summary metric (e.g. robust_acc) ...")
@click.option("--min", "minimums", multiple=True, help="... among those with METRIC >= VALUE.")
@click.option("--max", "maximums", multiple=True, help="... among those with METRIC <= VALUE.")
def report(run_dir: Path, rank_by: str | None, minimums: tuple[str, ...],
           maximums: tuple[str, ...]) -> None:
    """Rebuild summary.json, epochs.csv and the report of RUN_DIR from its database.

    With --rank-by (and --min/--max bounds) the report ranks the groups under those
    constraints instead of the config's `report` settings."""
    from . import run as run_module

    ranking = None
    if rank_by is not None or minimums or maximums:
        from .cli_gate import _bounds
        from .metrics import SUMMARY_METRICS

        if rank_by is None:
            fail("--min/--max: only with --rank-by METRIC")
        if rank_by not in SUMMARY_METRICS:
            fail(f"--rank-by: unknown metric {rank_by!r}; allowed: {', '.join(SUMMARY_METRICS)}")
        bounds = _bounds("--min", minimums, set(SUMMARY_METRICS)) + \
            _bounds("--max", maximums, set(SUMMARY_METRICS))
        ranking = config_module.ReportConfig(
            rank_by=rank_by, min={n: v for kind, n, v in bounds if kind == "min"},
            max={n: v for kind, n, v in bounds if kind == "max"})
    try:
        run_module.rebuild_report(run_dir, ranking)
    except run_module.RunError as error:
        fail(str(error))
    except run_module.StoreError as error:
        click.echo(f"robustlr: error: {error}", err=True)
        sys.exit(1)
    click.echo(f"report: {run_dir / 'report.html'}")


from .cli_attack import attack  # noqa: E402  (it imports `fail` from here when it runs)
from .cli_gate import compare, gate  # noqa: E402
from .cli_lrfind import lr_find  # noqa: E402
from .cli_train import train  # noqa: E402

main.add_command(attack)
main.add_command(gate)
main.add_command(compare)
main.add_command(lr_find)
main.add_command(train)

if __name__ == "__main__":
    main()
