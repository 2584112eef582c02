"""``robustlr export``: a run's results in another tool's format. Example::

    robustlr export runs/digits-audit --format robustbench            # best trial per schedule
    robustlr export runs/digits-audit --format robustbench --select all --out entries.json

``robustbench`` writes a JSON list of RobustBench-style entries (see
:mod:`robustlr.results.robustbench`) for the trials whose final cascade ran reference
AutoAttack; bad input is one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from robustlr.errors import InputError


def _read_run(run_dir: Path) -> tuple[list[dict], dict]:
    """The trial records (from results.sqlite, integrity-checked, when the folder has one; else
    from summary.json, as a folder copied without its database) and the raw config."""
    from robustlr import safe_yaml

    summary, config = run_dir / "summary.json", run_dir / "config.yaml"
    if (run_dir / "results.sqlite").is_file():
        from robustlr.results.store import load_summaries

        records: object = load_summaries(run_dir)
    elif not summary.is_file():
        raise InputError(f"RUN_DIR: {str(run_dir)!r} has no summary.json (not a run folder?)")
    else:
        try:
            records = json.loads(summary.read_text())
        except (ValueError, RecursionError) as error:
            raise InputError(f"RUN_DIR: cannot read {str(summary)!r} ({type(error).__name__})") from None
    raw = safe_yaml.load_file(config) if config.is_file() else {}  # bounded; one-line errors
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError(f"RUN_DIR: {str(summary)!r} is not a list of trial records")
    return records, raw if isinstance(raw, dict) else {}


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["robustbench"]), required=True,
              help="robustbench: RobustBench-style entries for trials evaluated with autoattack.")
@click.option("--select", type=click.Choice(["best", "all"]), default="best", show_default=True,
              help="best: the trial with the highest AutoAttack accuracy per schedule.")
@click.option("--out", type=click.Path(path_type=Path),
              help="Output file (default: RUN_DIR/robustbench.json).")
def export(run_dir: Path, fmt: str, select: str, out: Path | None) -> None:
    """Export the results of the run in RUN_DIR in another tool's format."""
    from robustlr.grid import spec_text
    from robustlr.nofollow import write_atomic
    from robustlr.results import robustbench

    records, config = _read_run(run_dir)
    data = config.get("data") or {}
    found = robustbench.entries(records, dataset=str(data.get("name", "unknown")),
                                architecture=spec_text(config.get("model", "cnn")), select=select)
    target = out or run_dir / f"{fmt}.json"
    # into the run folder: never through a planted link (nor at --out's name itself)
    write_atomic(target, json.dumps(found, indent=2) + "\n", check_folder=out is None)
    click.echo(f"{fmt}: {len(found)} entries -> {target}")


__all__ = ["export"]
