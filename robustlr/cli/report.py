"""``robustlr report``: rebuild a run folder's exports and report from its database."""

from __future__ import annotations

from pathlib import Path

import click

from robustlr.errors import InputError


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--rank-by", help="Rank the groups by this summary metric (e.g. robust_acc) ...")
@click.option("--min", "minimums", multiple=True,
              help="... among those with METRIC >= VALUE (shares in percent, like the report).")
@click.option("--max", "maximums", multiple=True,
              help="... among those with METRIC <= VALUE (shares in percent, like the report).")
@click.option("--allow-backdoored", is_flag=True,
              help="... letting poisoned groups with attack success above 50% qualify.")
def report(run_dir: Path, rank_by: str | None, minimums: tuple[str, ...],
           maximums: tuple[str, ...], allow_backdoored: bool) -> None:
    """Rebuild summary.json, epochs.csv and the report of RUN_DIR from its database.

    With --rank-by (and --min/--max bounds) the report ranks the groups under those
    constraints instead of the config's `report` settings."""
    from robustlr.config import ReportConfig
    from robustlr.records import SUMMARY_METRICS
    from robustlr.results import bounds
    from robustlr.runs import folder

    ranking = None
    if rank_by is not None or minimums or maximums or allow_backdoored:
        if rank_by is None:
            raise InputError("--min/--max/--allow-backdoored: only with --rank-by METRIC")
        if rank_by not in SUMMARY_METRICS:
            raise InputError(f"--rank-by: unknown metric {rank_by!r}; "
                             f"allowed: {', '.join(SUMMARY_METRICS)}")
        parsed = bounds.parse("--min", minimums, SUMMARY_METRICS) + \
            bounds.parse("--max", maximums, SUMMARY_METRICS)
        ranking = ReportConfig(rank_by=rank_by,
                               min={b.metric: b.shown(b.limit) for b in parsed if b.kind == "min"},
                               max={b.metric: b.shown(b.limit) for b in parsed if b.kind == "max"},
                               backdoored_asr=None if allow_backdoored else 50.0)
    folder.rebuild_report(run_dir, ranking)
    click.echo(f"report: {run_dir / 'report.html'}")
