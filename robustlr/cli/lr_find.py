"""``robustlr lr-find``: the LR range test on a config's model, optimizer, data and regime.

Writes lr_find.csv, lr_find.json and lr_find.png into a new folder and prints the suggested
base LR. The folder is created only once the sweep has finished, so a bad input or a crash
leaves nothing behind. Registered on the ``robustlr`` group in :mod:`robustlr.cli`.
"""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import click

from robustlr.errors import InputError


@click.command("lr-find")
@click.argument("config", required=False, type=click.Path(path_type=Path))
@click.option("--regime", help="Regime spec to sweep under (default: the config's first regime).")
@click.option("--seed", type=int, default=None, help="Seed (default: the config's first seed).")
@click.option("--min-lr", type=float, default=1e-5, show_default=True)
@click.option("--max-lr", type=float, default=10.0, show_default=True)
@click.option("--steps", type=int, default=100, show_default=True,
              help="Optimizer steps over which the LR grows exponentially.")
@click.option("--smoothing", type=float, default=0.9, show_default=True,
              help="Weight of the past in the loss's moving average.")
@click.option("--diverge-factor", type=float, default=4.0, show_default=True,
              help="Stop once the smoothed loss exceeds this multiple of its minimum.")
@click.option("--out", type=click.Path(path_type=Path), help="Output folder (default runs/lr-find-NAME-TIME).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def lr_find(config: Path | None, regime: str | None, seed: int | None, min_lr: float,
            max_lr: float, steps: int, smoothing: float, diverge_factor: float,
            out: Path | None, no_progress: bool) -> None:
    """Sweep the LR exponentially over a short run, plot loss against LR, suggest a base LR.

    Under adversarial training the loss is the robust loss; under DP each step also records
    the fraction of clipped gradients, and the privacy the sweep spent is printed."""
    from tqdm import tqdm

    from robustlr import config as config_module
    from robustlr import data as datasets
    from robustlr import experiment
    from robustlr.regimes import REGIMES
    from robustlr.spec import SpecError
    from robustlr.training import lr_find as range_test
    from robustlr.training.trial import prepare_data

    try:
        sweep = range_test.Sweep(min_lr=min_lr, max_lr=max_lr, steps=steps, smoothing=smoothing,
                                 diverge_factor=diverge_factor)
        loaded = experiment.load(config or config_module.default_path())
        dimensions = loaded.dimension_sets()[0]
        regime_spec = regime or _text(dimensions["regimes"][0])
        REGIMES.check(regime_spec)
        seed = dimensions["seeds"][0] if seed is None else seed
        bundle = prepare_data(loaded.data, seed)
    except (ValueError, SpecError, config_module.ConfigError) as error:
        raise InputError(str(error)) from None
    except datasets.DataError as error:
        raise InputError(f"data: {error}") from None
    out = out or Path("runs") / f"lr-find-{loaded.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out: {out} exists and is not empty; choose another folder")

    with tqdm(total=sweep.steps, desc="lr-find", unit="step", disable=no_progress) as bar:
        try:
            result = range_test.run(loaded, bundle, regime_spec=regime_spec, seed=seed,
                                    sweep=sweep, on_step=bar.update)
        except ValueError as error:  # a regime that cannot prepare (e.g. DP's delta vs N)
            raise InputError(str(error)) from None
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        range_test.save(result, out)
    except OSError as error:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise InputError(f"--out: cannot write {out}: {error.strerror or error}") from None
    _print(result, out)


def _text(spec) -> str:
    from robustlr.grid import spec_text

    return spec_text(spec)


def _print(result, out: Path) -> None:
    click.echo(f"lr-find: {len(result.rows)} steps under {result.regime} "
               f"({result.loss_kind} loss), {result.stopped}")
    if result.suggested_lr is not None:
        click.echo(f"suggested train.lr: {result.suggested_lr:.3g} (steepest descent of the "
                   f"smoothed loss); minimum-loss LR / 10: {result.min_loss_lr / 10:.3g}")
    else:
        click.echo("no suggestion: the loss did not fall over the sweep; lower --min-lr")
    if result.epsilon is not None:
        click.echo(f"privacy: this sweep's DP-SGD steps spent epsilon {result.epsilon:.3g}, but "
                   "its loss curve and clipped fractions are exact statistics of the private "
                   "training data: no epsilon covers them or an LR chosen from them")
    click.echo(f"plot: {out / 'lr_find.png'}")
