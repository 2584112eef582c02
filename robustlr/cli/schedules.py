"""``robustlr schedules`` and ``robustlr schedules show``: the catalogue and one spec's curve."""

from __future__ import annotations

from pathlib import Path

import click


@click.group(invoke_without_command=True)
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="Draw every schedule at its defaults into this PNG.")
@click.pass_context
def schedules(context: click.Context, plot_path: Path | None) -> None:
    """List every schedule with its parameters and defaults."""
    if context.invoked_subcommand is not None:
        return
    from robustlr import schedules as catalogue  # torch: imported when the command runs

    for name, summary, parameters in catalogue.describe():
        params = ", ".join(f"{k}={v!r}" for k, v in parameters.items())
        click.echo(f"{name}({params})\n    {summary}")
    if plot_path is not None:
        catalogue.plot([name for name, _, _ in catalogue.describe()], plot_path)
        click.echo(f"plot: {plot_path}")


@schedules.command("show")
@click.argument("spec")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="Evenly spaced optimizer steps to print.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), help="Also draw it into this PNG.")
def schedules_show(spec: str, steps: int, plot_path: Path | None) -> None:
    """Print SPEC's LR multiplier at each of N steps as CSV (step,progress,multiplier)."""
    from robustlr import schedules as catalogue

    schedule = catalogue.parse(spec)
    click.echo("step,progress,multiplier")
    for step, value in enumerate(catalogue.values(schedule, steps)):
        click.echo(f"{step},{step / steps:.6g},{value:.8g}")
    if plot_path is not None:
        catalogue.plot([spec], plot_path)
