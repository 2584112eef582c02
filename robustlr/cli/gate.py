"""``robustlr gate`` and ``robustlr compare``: a run folder as a CI check, and two runs side by
side with the seed noise as the yardstick.

Both read ``results.sqlite`` only (never ``summary.json``, an export anyone can edit) and group trials
by what defines a result: (schedule, regime, poison, filter, lr_scale); seeds are averaged.
Example::

    robustlr gate runs/x --min clean_acc=90 --min robust_acc=50 --max epsilon=3 --max asr=10
    robustlr compare runs/before runs/after --json

``gate`` exits 0 when every bound holds, 1 when one is broken (or a trial failed or diverged),
2 for bad arguments; ``compare`` exits 0, or 2 for a folder that is not a run. Both commands
are registered on the ``robustlr`` group in :mod:`robustlr.cli`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from robustlr.errors import InputError
from robustlr.records import unit
from robustlr.results import bounds as bounds_rule
from robustlr.results.groups import GROUP_KEYS, select
from robustlr.results.groups import label as _label
from robustlr.results.store import FINAL_STATUSES, load_summaries, load_trials

BAD_STATUSES = ("failed", "diverged")


def _shown(metric: str, value: float) -> str:
    """A value in the report's units (percent for shares), as bounds are written."""
    return f"{value * 100:.4g}%" if unit(metric) == "%" else f"{value:.4g}"


def _gate_table(checks: list[dict], bad: list[dict]) -> str:
    header = ("bound", "group", "seeds", "value", "result")
    rows = [(c["bound"], c["label"], str(c["seeds"]),
             "n/a" if c["value"] is None else _shown(c["metric"], c["value"]),
             {"pass": "pass", "fail": "FAIL", "missing": "FAIL (missing or not finite)"}[c["status"]])
            for c in checks]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    lines += [f"FAIL: trial {r.get('trial')} ({_label(tuple(r.get(k) for k in GROUP_KEYS))}, seed "
              f"{r.get('seed')}) {r.get('status')}" + (f": {r['error']}" if r.get("error") else "")
              for r in bad]
    return "\n".join(lines)


MIXED_HELP = ("Go on (with a warning) when a group's trials differ in model or data; by default "
              "that is refused (exit 2), as they are not one experiment.")


def refuse_mixed(groups: dict[str, list[dict]], what: str, allow: bool) -> None:
    """Exit 2 (one line) when a group's trials differ in model or data, unless ``allow``: then
    one warning line on stderr per such group."""
    from robustlr.results.compare import mismatches

    found = mismatches(groups)
    if not found:
        return
    if not allow:
        more = f" (and {len(found) - 1} more groups)" if len(found) > 1 else ""
        raise InputError(f"{what} differ in model or data: {found[0]}{more}; compare like with "
                         "like, or pass --allow-mixed")
    for line in found:
        click.echo(f"warning: {what} differ in model or data: {line} (--allow-mixed)", err=True)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--min", "minimums", multiple=True, metavar="NAME=VALUE",
              help="The seed mean of summary field NAME must be >= VALUE in every group (repeat).")
@click.option("--max", "maximums", multiple=True, metavar="NAME=VALUE",
              help="The seed mean of summary field NAME must be <= VALUE in every group (repeat).")
@click.option("--schedule", help="Only trials of this schedule: a name (cosine) or an exact spec.")
@click.option("--regime", help="Only trials of this regime: a name (pgd_at) or an exact spec.")
@click.option("--finished-only", is_flag=True,
              help="Gate the finished trials only; unfinished (pending, running, interrupted) "
                   "ones are skipped and counted instead of failing the gate.")
@click.option("--allow-mixed", is_flag=True, help=MIXED_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def gate(run_dir: Path, minimums: tuple[str, ...], maximums: tuple[str, ...],
         schedule: str | None, regime: str | None, finished_only: bool, allow_mixed: bool,
         as_json: bool) -> None:
    """Check RUN_DIR's results against bounds: exit 0 when all hold, 1 when one breaks.

    Reads RUN_DIR/results.sqlite only. Each bound applies to the seed mean of every group of
    the threat model its metric is defined for (asr and the other poisoning metrics: poisoning
    trials; epsilon and the other DP fields: DP trials; the rest: every group); a bound that
    applies to no gated trial is an input error (exit 2). A trial that failed or diverged
    fails the gate, and so does an unfinished one (pending, running or interrupted) unless
    --finished-only. A group (schedule, regime, poison, filter, LR scale) whose value is
    missing or not finite for any seed fails the bound (select the groups a bound is about
    with --schedule/--regime). A group whose trials differ in model or data is refused
    (exit 2) unless --allow-mixed."""
    # scipy (via the statistics) is loaded only when a command runs
    from robustlr.results.compare import applicable, check, numeric_fields
    from robustlr.results.stats import group

    trials = load_trials(run_dir)
    records = [s for _, status, s in trials if status in FINAL_STATUSES and s is not None]
    unfinished = [(trial, status) for trial, status, _ in trials if status not in FINAL_STATUSES]
    if not records:
        raise InputError(f"RUN_DIR: {run_dir} holds no finished trial to check")
    allowed = numeric_fields(records)
    bounds = bounds_rule.parse("--min", minimums, allowed) + bounds_rule.parse("--max", maximums, allowed)
    if not bounds:
        raise InputError("give at least one bound: --min NAME=VALUE or --max NAME=VALUE")
    records = select(select(records, "--schedule", "schedule", schedule), "--regime", "regime", regime)
    groups = group(records, GROUP_KEYS)
    refuse_mixed({_label(key): runs for key, runs in groups.items()}, "trials of one group",
                 allow_mixed)
    checks = [check(bound, key, runs) for bound in bounds
              for key, runs in applicable(bound, groups).items()]
    outside = len(bounds) * len(groups) - len(checks)  # a bound outside its threat model
    bad = [r for r in records if r.get("status") in BAD_STATUSES]
    blocking = [] if finished_only else unfinished
    passed = not bad and not blocking and all(c["status"] == "pass" for c in checks)
    if as_json:
        click.echo(json.dumps({"run": str(run_dir), "passed": passed, "checks": checks,
                               "bad_trials": [{k: r.get(k) for k in ("trial", "status", "error")}
                                              for r in bad],
                               "unfinished": [{"trial": t, "status": s} for t, s in unfinished],
                               "skipped": len(unfinished) if finished_only else 0,
                               "not_applicable": outside}, indent=2))
    else:
        click.echo(_gate_table(checks, bad))
        click.echo(_verdict(passed, checks, bad, unfinished, finished_only, outside))
    sys.exit(0 if passed else 1)


def _verdict(passed: bool, checks: list[dict], bad: list[dict],
             unfinished: list[tuple[str, str]], finished_only: bool, outside: int = 0) -> str:
    lines = [] if finished_only else [f"FAIL: trial {trial} is unfinished ({status}); resume the "
                                      "run, or gate the finished trials with --finished-only"
                                      for trial, status in unfinished]
    broken = sum(c["status"] != "pass" for c in checks)
    verdict = (f"gate: {'passed' if passed else 'FAILED'}: {len(checks)} checks, {broken} broken "
               f"({sum(c['status'] == 'missing' for c in checks)} missing), {len(bad)} failed or "
               f"diverged trials, {len(unfinished)} unfinished")
    if finished_only and unfinished:
        verdict += f"; skipped {len(unfinished)} unfinished trials (--finished-only)"
    if outside:
        verdict += (f"; {outside} bound-group pairs not checked: the metric is not defined for "
                    "that threat model (asr: poisoning trials, epsilon: DP trials)")
    return "\n".join([*lines, verdict])


def _amount(metric: str, value: float, sign: str = "", change: bool = False) -> str:
    """A value in the report's units; a change of a share in percentage points."""
    if unit(metric) == "%":
        return f"{value * 100:{sign}.2f}" + (" pts" if change else "%")
    return f"{value:{sign}.4g}"


def _noise(m: dict) -> str:
    if m["p"] is not None:
        return (f"± {_amount(m['metric'], m['half'], change=True)}, p={m['p']:.3f} "
                f"({m['paired_seeds']} paired seeds)")
    return "-" if m["se"] is None else f"2 x SE {_amount(m['metric'], 2 * m['se'], change=True)}"


def _compare_table(compared: list[dict]) -> list[str]:
    header = ("group", "metric", "seeds", "A", "B", "change", "noise", "")
    rows = [(g["label"], m["metric"], f"{m['seeds_a']}/{m['seeds_b']}", _amount(m["metric"], m["a"]),
             _amount(m["metric"], m["b"]), _amount(m["metric"], m["change"], "+", change=True), _noise(m),
             "CHANGED" if m["flagged"] else m["note"])
            for g in compared for m in g["metrics"]]
    if not rows:
        return []
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    return ["  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)).rstrip()
            for row in [header, *rows]]


@click.command()
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--allow-mixed", is_flag=True, help=MIXED_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON (stored units: fractions).")
def compare(run_a: Path, run_b: Path, allow_mixed: bool, as_json: bool) -> None:
    """Seed means of RUN_A and RUN_B per group, and which changes exceed the noise.

    Shares (accuracies, attack success) are printed in percent, changes in percentage points.
    With two or more seeds in both runs a change is paired by seed and judged over seeds and
    test examples together: flagged when a paired t-test over seeds and an exact sign test over
    the fewest test examples that make the gaps both give p < 0.05, never for a mean gap of one
    test example or less. Otherwise it is flagged when larger than twice the pooled standard
    error; with one seed on each side there is no noise estimate and nothing is flagged. Runs
    whose groups differ in model or data are refused (exit 2) unless --allow-mixed."""
    from robustlr.results.compare import compare_groups, unpaired
    from robustlr.results.stats import group

    records_a, records_b = load_summaries(run_a, "RUN_A"), load_summaries(run_b, "RUN_B")
    keyed_a, keyed_b = group(records_a, GROUP_KEYS), group(records_b, GROUP_KEYS)
    refuse_mixed({_label(k): keyed_a[k] + keyed_b[k] for k in keyed_a if k in keyed_b},
                 "RUN_A and RUN_B", allow_mixed)
    compared = compare_groups(records_a, records_b)
    only_a, only_b = unpaired(records_a, records_b)
    if as_json:
        click.echo(json.dumps({"a": str(run_a), "b": str(run_b), "groups": compared,
                               "only_a": only_a, "only_b": only_b}, indent=2))
        return
    lines = _compare_table(compared) or ["no group (schedule, regime, poison, filter, LR scale) "
                                         "is in both runs"]
    lines += [f"only in A: {label}" for label in only_a] + [f"only in B: {label}" for label in only_b]
    flagged = sum(m["flagged"] for g in compared for m in g["metrics"])
    lines.append(f"compare: {len(compared)} groups in both runs, {flagged} changes beyond noise "
                 "(paired by seed: t-test over seeds and exact sign test over test examples, "
                 "p < 0.05, more than one example; else |change| > 2 x pooled SE); "
                 "change = B - A, shares in percent")
    click.echo("\n".join(lines))


__all__ = ["gate", "compare"]
