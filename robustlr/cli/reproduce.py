"""``robustlr reproduce``: run a published recipe and set the result beside the paper's.

    robustlr reproduce tramer_boneh_dp_mnist                       # run it, then compare
    robustlr reproduce tramer_boneh_dp_mnist --compare RUN_DIR [--epoch E] [--reference R]
        [--finished-only]

NAME is an entry of ``published.yaml`` in the reproductions folder (``--dir``, default
``experiments/reproductions`` of the current directory, else of robustlr's source tree); the
entry names its config, metric, published value and tolerance. The folder is put on the
import path (and PYTHONPATH, for the workers), so a config's user model factory there loads.
The comparison ("published vs robustlr mean ± 95% interval over seeds, reproduced within X /
differs by Y") goes into the run folder: reproduction.json, reproduction.md, and a section
of report.md and report.html.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from robustlr.errors import InputError


def reproductions_dir(given: Path | None) -> Path:
    candidates = [given] if given else [Path("experiments/reproductions"),
                                        Path(__file__).resolve().parents[2] / "experiments" / "reproductions"]
    for folder in candidates:
        if folder is not None and (folder / "published.yaml").is_file():
            return folder
    raise InputError(f"--dir: no published.yaml in {', '.join(str(c) for c in candidates)}; "
                     "point --dir at a reproductions folder")


def _importable(folder: Path) -> None:
    path = str(folder.resolve())
    if path not in sys.path:
        sys.path.insert(0, path)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if path not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([path, *parts])


@click.command()
@click.argument("name")
@click.option("--dir", "folder", type=click.Path(path_type=Path, file_okay=False),
              help="Reproductions folder holding published.yaml (default experiments/reproductions).")
@click.option("--out", type=click.Path(path_type=Path), help="Run folder (default runs/NAME-TIME).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Trials trained in parallel.")
@click.option("--quick", is_flag=True, help="The recipe with fewer epochs and less data (a smoke run).")
@click.option("--compare", "compare_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Do not train: compare this existing run folder of the recipe.")
@click.option("--epoch", type=click.IntRange(min=1), default=None,
              help="Compare every trial at this epoch (a run stopped early); default the last.")
@click.option("--finished-only", is_flag=True,
              help="With --compare: leave out the trials that did not finish (named in a note).")
@click.option("--reference", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Output of the plain reference script (JSON, or its JSON-lines log).")
@click.option("--no-progress", is_flag=True, help="No progress display.")
def reproduce(name: str, folder: Path | None, out: Path | None, workers: int | None, quick: bool,
              compare_dir: Path | None, epoch: int | None, finished_only: bool, reference: Path | None,
              no_progress: bool) -> None:
    """Run reproduction NAME (an entry of published.yaml) and compare it with the paper."""
    from robustlr.results import reproduction

    where = reproductions_dir(folder)
    entries = reproduction.load_published(where / "published.yaml")
    if name not in entries:
        raise InputError(f"NAME: unknown reproduction {name!r}; allowed: {', '.join(sorted(entries))}")
    entry = entries[name]
    notes = []
    if compare_dir is None:
        from robustlr import experiment
        from robustlr.runs import folder as run_folder
        from robustlr.runs.grid_runner import default_workers

        _importable(where)
        loaded = experiment.load(where / entry["config"])
        if quick:
            loaded = run_folder.quick(loaded)
            notes.append("--quick: fewer epochs and less data than the recipe; not the published setting")
        run_dir = run_folder.run_in_folder(loaded, out=out, resume=None, workers=workers or default_workers(),
                                     save_models=False, show_progress=not no_progress, backend="local",
                                     address=None, track=None, tracking_uri=None)
    else:
        run_dir = compare_dir
    if epoch is not None:
        notes.append(f"compared at epoch {epoch}, before the recipe's last")
    left_out = reproduction.unfinished_seeds(run_dir) if finished_only else []
    if left_out:
        notes.append(f"not finished, left out (--finished-only): seed{'s' if len(left_out) > 1 else ''} "
                     f"{', '.join(map(str, left_out))}")
    comparison = reproduction.compare_run(name, entry, run_dir, epoch, reference, notes,
                                          finished_only=finished_only)
    reproduction.write(run_dir, comparison, entry)
    for part in (comparison, *comparison.also):
        click.echo(part.line)
    click.echo(f"run folder: {run_dir} (reproduction.md, report.html)")


__all__ = ["reproduce"]
