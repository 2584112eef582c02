"""What each defence costs, per schedule, on the report's first screen: the change in clean and
robust accuracy against the reference (the same schedule under standard, non-private training
on clean data), with the epsilon a DP trial spent and the attack success a poisoned one
reached. Each side is the schedule as the verdict shows it (at its chosen LR scale); the
change is the difference of the seed means, in points."""

from __future__ import annotations

import math
from dataclasses import dataclass

from robustlr.results.report.document import Document
from robustlr.results.report.threats import Entry, Judged, Threat
from robustlr.results.stats import finite, interval

# the columns each kind of threat model gets, after the change in clean accuracy
_COLUMNS = {"adversarial": ("robust",), "dp": ("robust", "epsilon"), "poison": ("asr",)}
_HEADERS = {"clean": "Δ clean", "robust": "Δ robust", "epsilon": "ε spent", "asr": "ASR %"}
# Up to this many schedules the table goes between the verdict and the frontiers (both on the
# first screen, 1,400 x 1,200); a longer one follows the frontiers so they stay on it.
FIRST_SCREEN_ROWS = 8


@dataclass(frozen=True)
class Cost:
    """One schedule under one defence against its reference; NaN where not measured."""

    clean: float  # change in clean accuracy, fraction (negative: the defence costs accuracy)
    robust: float  # change in robust accuracy, fraction
    epsilon: float  # epsilon spent per trial (DP), seed mean
    asr: float  # attack success (poisoning), fraction, seed mean


def mean_of(runs: list[dict], key: str) -> float:
    return interval([finite(r.get(key)) for r in runs]).mean


def cost(entry: Entry, reference: Entry | None) -> Cost:
    """``entry`` against ``reference`` (the same schedule under standard training)."""
    def change(key: str) -> float:
        return (mean_of(entry.runs, key) - mean_of(reference.runs, key)
                if reference is not None else math.nan)
    return Cost(change("clean_acc"), change("robust_acc"), mean_of(entry.runs, "epsilon"),
                mean_of(entry.runs, "asr"))


def reference_entries(judged: list[Judged]) -> dict[str, Entry]:
    """The standard threat model's entries by schedule spec: the reference of every defence."""
    standard = next((j for j in judged if j.threat.kind == "standard"), None)
    return {e.schedule: e for e in standard.entries} if standard else {}


def cell_text(value: float, what: str) -> str:
    if not math.isfinite(value):
        return "-"
    if what == "epsilon":
        return f"{value:.2f}"
    if what in ("asr", "percent"):
        return f"{100 * value:.1f}"
    points = round(100 * value, 1)
    if points == 0:
        return "0.0"  # never "-0.0" or "+0.0": no change at this precision
    return f"{points:+.1f}".replace("-", "−")  # a real minus: the sign must not be missed


def _defences(judged: list[Judged]) -> list[Judged]:
    return [j for j in judged if j.threat.kind in _COLUMNS] if reference_entries(judged) else []


def defended(document: Document, judged: list[Judged]) -> list[str]:
    """The schedules the table has a row for: those run under at least one defence."""
    defences = _defences(judged)
    return [s for s in document.palette.order
            if any(e.schedule == s for j in defences for e in j.entries)]


def defence_cost_table(document: Document, judged: list[Judged]) -> None:
    """The table; nothing when no defence ran beside standard training."""
    defences = _defences(judged)
    references = reference_entries(judged)
    if not defences:
        return
    robust = any(math.isfinite(mean_of(e.runs, "robust_acc")) for e in references.values())
    columns = {j.threat: [c for c in ("clean", *_COLUMNS[j.threat.kind]) if robust or c != "robust"]
               for j in defences}
    rows = []
    for schedule in defended(document, judged):
        reference = references.get(schedule)
        row = [document.palette.name(schedule)]
        row += [cell_text(mean_of(reference.runs, k), "percent") if reference else "-"
                for k in ("clean_acc", "robust_acc")[:1 + robust]]
        for item in defences:
            entry = next((e for e in item.entries if e.schedule == schedule), None)
            values = cost(entry, reference) if entry else None
            row += [cell_text(getattr(values, c), c) if values else "" for c in columns[item.threat]]
        rows.append(row)
    header = ["schedule", "clean %", "robust %"][:2 + robust]
    header += [_HEADERS[c] for item in defences for c in columns[item.threat]]
    groups = [("", 1), ("reference: standard training", 1 + robust)]
    groups += [(_short(item.threat), len(columns[item.threat])) for item in defences]
    document.text("What each defence costs: change in points against the same schedule under "
                  "standard training (clean data, no DP), difference of seed means; ε per trial.")
    document.table(header, rows, groups=groups, name="defence_cost")


def _short(threat: Threat) -> str:
    """A threat model's name short enough for a column group."""
    return threat.name.replace("/ filter ", "/ ")
