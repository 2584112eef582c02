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
import math
import sys
from pathlib import Path
from typing import Any

import click

from robustlr.errors import InputError
from robustlr.records import SUMMARY_METRICS, unit
from robustlr.results import bounds as bounds_rule
from robustlr.results.groups import GROUP_KEYS
from robustlr.results.groups import label as _label

COMPARED = ("clean_acc", "clean_acc_best", "robust_acc", "monitor_robust_acc", "epsilon", "asr",
            "mia_auc", "train_seconds")
METRICS = SUMMARY_METRICS
NOT_METRICS = {"seed", "lr_scale"}
BAD_STATUSES = ("failed", "diverged")




def load_trials(run_dir: Path, what: str = "RUN_DIR") -> list[tuple[str, str, dict | None]]:
    """(trial, status, summary or None) of every trial in the run's database, which alone is
    trusted: summary.json is an export anyone can edit."""
    database = run_dir / "results.sqlite"
    if not database.is_file():
        raise InputError(f"{what}: {run_dir} is not a robustlr run folder (no results.sqlite)")
    from robustlr.results.store import Store, StoreError

    try:
        store = Store(database)
        try:
            return store.trials()
        finally:
            store.close()
    except StoreError as error:
        raise StoreError(f"{what}: {error}") from None


def load_summaries(run_dir: Path, what: str = "RUN_DIR") -> list[dict[str, Any]]:
    """The summaries of the run's finished trials, from its database."""
    from robustlr.results.store import FINAL_STATUSES

    return [summary for _, status, summary in load_trials(run_dir, what)
            if status in FINAL_STATUSES and summary is not None]


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None




def _spec_name(spec: Any) -> tuple[str, Any]:
    """(name, parameters in key order) of a spec as written; the text itself when it does not
    parse."""
    from robustlr.spec import SpecError, parse

    try:
        parsed = parse(spec)
        return parsed.name, (parsed.name, sorted(parsed.params, key=lambda item: item[0]))
    except SpecError:
        return str(spec).split("(")[0].strip(), str(spec)


def _matches(written: Any, wanted: str) -> bool:
    name, canonical = _spec_name(written)
    return wanted in (name, str(written)) or _spec_name(wanted)[1] == canonical




def _numeric_fields(records: list[dict[str, Any]]) -> set[str]:
    found = {k for r in records for k, v in r.items() if _number(v) is not None}
    return (set(METRICS) | found) - NOT_METRICS


def _select(records: list[dict], option: str, key: str, wanted: str | None) -> list[dict]:
    if wanted is None:
        return records
    chosen = [r for r in records if _matches(r.get(key), wanted)]
    if not chosen:
        present = ", ".join(dict.fromkeys(str(r.get(key)) for r in records)) or "none"
        raise InputError(f"{option}: no trial matches {wanted!r}; the run has: {present}")
    return chosen


def _check(bound: bounds_rule.Bound, key: tuple, records: list[dict]) -> dict[str, Any]:
    from robustlr.results.stats import interval  # scipy: loaded only when a command runs

    values = [_number(r.get(bound.metric)) for r in records]
    # one seed without the value (or with inf/nan) makes the mean unknown: the bound fails
    value = math.nan if None in values else interval(values).mean
    finite = math.isfinite(value)
    return {"bound": bound.text, "metric": bound.metric, "side": bound.kind,
            "limit": bound.limit, "group": dict(zip(GROUP_KEYS, key)), "label": _label(key),
            "seeds": len(records), "value": value if finite else None,
            "status": "pass" if bound.holds(value) else ("fail" if finite else "missing")}


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
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def gate(run_dir: Path, minimums: tuple[str, ...], maximums: tuple[str, ...],
         schedule: str | None, regime: str | None, finished_only: bool, as_json: bool) -> None:
    """Check RUN_DIR's results against bounds: exit 0 when all hold, 1 when one breaks.

    Reads RUN_DIR/results.sqlite only. Each bound applies to the seed mean of every group. A
    trial that failed or diverged fails the gate, and so does an unfinished one (pending,
    running or interrupted) unless --finished-only. A group (schedule, regime, poison, filter,
    LR scale) whose value is missing or not finite for any seed fails the bound (select the
    groups a bound is about with --schedule/--regime)."""
    from robustlr.results.stats import group
    from robustlr.results.store import FINAL_STATUSES

    trials = load_trials(run_dir)
    records = [s for _, status, s in trials if status in FINAL_STATUSES and s is not None]
    unfinished = [(trial, status) for trial, status, _ in trials if status not in FINAL_STATUSES]
    if not records:
        raise InputError(f"RUN_DIR: {run_dir} holds no finished trial to check")
    allowed = _numeric_fields(records)
    bounds = bounds_rule.parse("--min", minimums, allowed) + bounds_rule.parse("--max", maximums, allowed)
    if not bounds:
        raise InputError("give at least one bound: --min NAME=VALUE or --max NAME=VALUE")
    records = _select(_select(records, "--schedule", "schedule", schedule), "--regime", "regime", regime)
    checks = [_check(bound, key, runs) for bound in bounds
              for key, runs in group(records, GROUP_KEYS).items()]
    bad = [r for r in records if r.get("status") in BAD_STATUSES]
    blocking = [] if finished_only else unfinished
    passed = not bad and not blocking and all(c["status"] == "pass" for c in checks)
    if as_json:
        click.echo(json.dumps({"run": str(run_dir), "passed": passed, "checks": checks,
                               "bad_trials": [{k: r.get(k) for k in ("trial", "status", "error")}
                                              for r in bad],
                               "unfinished": [{"trial": t, "status": s} for t, s in unfinished],
                               "skipped": len(unfinished) if finished_only else 0}, indent=2))
    else:
        click.echo(_gate_table(checks, bad))
        click.echo(_verdict(passed, checks, bad, unfinished, finished_only))
    sys.exit(0 if passed else 1)


def _verdict(passed: bool, checks: list[dict], bad: list[dict],
             unfinished: list[tuple[str, str]], finished_only: bool) -> str:
    lines = [] if finished_only else [f"FAIL: trial {trial} is unfinished ({status}); resume the "
                                      "run, or gate the finished trials with --finished-only"
                                      for trial, status in unfinished]
    broken = sum(c["status"] != "pass" for c in checks)
    verdict = (f"gate: {'passed' if passed else 'FAILED'}: {len(checks)} checks, {broken} broken "
               f"({sum(c['status'] == 'missing' for c in checks)} missing), {len(bad)} failed or "
               f"diverged trials, {len(unfinished)} unfinished")
    if finished_only and unfinished:
        verdict += f"; skipped {len(unfinished)} unfinished trials (--finished-only)"
    return "\n".join([*lines, verdict])


def _difference(a: list[float], b: list[float]) -> dict[str, Any]:
    """B mean - A mean and the pooled standard error of that difference across seeds."""
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    change = mean_b - mean_a
    freedom = len(a) + len(b) - 2
    if freedom < 1:
        return {"a": mean_a, "b": mean_b, "change": change, "se": None, "flagged": False,
                "note": "1 seed: no noise estimate"}
    squares = sum((v - mean_a) ** 2 for v in a) + sum((v - mean_b) ** 2 for v in b)
    se = math.sqrt(squares / freedom * (1 / len(a) + 1 / len(b)))
    flagged = abs(change) > 2 * se
    return {"a": mean_a, "b": mean_b, "change": change, "se": se, "flagged": flagged,
            "note": "beyond seed noise" if flagged else ""}


def _compare_groups(records_a: list[dict], records_b: list[dict]) -> list[dict[str, Any]]:
    from robustlr.results.stats import group

    groups_a, groups_b = group(records_a, GROUP_KEYS), group(records_b, GROUP_KEYS)
    compared = []
    for key in [k for k in groups_a if k in groups_b]:
        metrics = []
        for metric in COMPARED:
            a = [v for v in (_number(r.get(metric)) for r in groups_a[key]) if v is not None]
            b = [v for v in (_number(r.get(metric)) for r in groups_b[key]) if v is not None]
            if a and b:
                metrics.append({"metric": metric, "seeds_a": len(a), "seeds_b": len(b),
                                **_difference(a, b)})
        compared.append({"group": dict(zip(GROUP_KEYS, key)), "label": _label(key),
                         "metrics": metrics})
    return compared


def _compare_table(compared: list[dict]) -> list[str]:
    header = ("group", "metric", "seeds", "A", "B", "change", "2 x SE", "")
    rows = [(g["label"], m["metric"], f"{m['seeds_a']}/{m['seeds_b']}", f"{m['a']:.4g}",
             f"{m['b']:.4g}", f"{m['change']:+.4g}",
             "-" if m["se"] is None else f"{2 * m['se']:.3g}",
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
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare(run_a: Path, run_b: Path, as_json: bool) -> None:
    """Seed means of RUN_A and RUN_B per group, and which changes exceed the seed noise.

    A change is flagged when it is larger than twice the pooled standard error across seeds;
    with one seed on each side there is no noise estimate and nothing is flagged."""
    from robustlr.results.stats import group

    records_a, records_b = load_summaries(run_a, "RUN_A"), load_summaries(run_b, "RUN_B")
    compared = _compare_groups(records_a, records_b)
    keys_a, keys_b = (set(group(r, GROUP_KEYS)) for r in (records_a, records_b))
    only_a = [_label(k) for k in group(records_a, GROUP_KEYS) if k not in keys_b]
    only_b = [_label(k) for k in group(records_b, GROUP_KEYS) if k not in keys_a]
    if as_json:
        click.echo(json.dumps({"a": str(run_a), "b": str(run_b), "groups": compared,
                               "only_a": only_a, "only_b": only_b}, indent=2))
        return
    lines = _compare_table(compared) or ["no group (schedule, regime, poison, filter, LR scale) "
                                         "is in both runs"]
    lines += [f"only in A: {label}" for label in only_a] + [f"only in B: {label}" for label in only_b]
    flagged = sum(m["flagged"] for g in compared for m in g["metrics"])
    lines.append(f"compare: {len(compared)} groups in both runs, {flagged} changes beyond seed "
                 "noise (|change| > 2 x pooled SE); change = B - A")
    click.echo("\n".join(lines))


__all__ = ["gate", "compare", "load_summaries", "GROUP_KEYS", "COMPARED"]
