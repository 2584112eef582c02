"""Notes the verdict needs about schedules that did not do what their name says: a
metric-driven schedule (``plateau``) whose reduction never fired trained at a constant LR, so
it is the same schedule as ``constant`` in this run, and a reader must not take a tie or a gap
between them for an effect of reducing on plateau."""

from __future__ import annotations

from collections import defaultdict

from robustlr import schedules
from robustlr.results.report.threats import BAD
from robustlr.spec import SpecError

_RELATIVE = 1e-6  # an LR this much below the epoch before is a reduction, not float noise


def _metric_driven(spec: str) -> schedules.Schedule | None:
    try:
        schedule = schedules.parse(spec)
    except (SpecError, ValueError):
        return None
    return schedule if schedule.metric_driven else None


def reduced(lrs: list[float]) -> bool:
    """Whether the LR ever fell from one epoch to the next (a warmup only raises it, so a fall
    is the metric-driven part firing)."""
    return any(after < before * (1 - _RELATIVE) for before, after in zip(lrs, lrs[1:]))


def never_fired(summaries: list[dict], rows: list[dict]) -> list[str]:
    """One sentence per metric-driven schedule whose reduction fired in none of its trials."""
    lrs: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in rows:
        if isinstance(row.get("lr"), (int, float)):
            lrs[row["trial"]].append((row["epoch"], float(row["lr"])))
    trials: dict[str, list[dict]] = defaultdict(list)
    for record in summaries:
        if record.get("status") not in BAD and record.get("trial") in lrs:
            trials[str(record.get("schedule"))].append(record)
    notes = []
    for spec, runs in trials.items():
        schedule = _metric_driven(spec)
        if schedule is None or any(reduced([lr for _, lr in sorted(lrs[r["trial"]])]) for r in runs):
            continue
        epochs = max(len(lrs[r["trial"]]) for r in runs)
        patience = getattr(schedule, "patience", None)
        why = f"{epochs} epochs" + (f", patience {patience}" if patience is not None else "")
        notes.append(f"Note: {spec} never reduced its LR ({len(runs)} trials, {why}): it trained "
                     "as constant did, so a gap between them is not its doing.")
    return notes
