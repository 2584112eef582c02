"""Per-class (slice) accuracy: per threat model and schedule, the worst class's clean and
robust accuracy beside the mean over classes. Adversarial training widens the gap between
classes (Xu et al. 2021, "To be robust or to be fair"), and the worst class is what a
deployment fails on. Computed from the per-class arrays every trial records
(``per_class_acc``, ``robust_per_class_acc``); :func:`worst_class` is the one definition."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from robustlr.results.report.document import Document
from robustlr.results.report.plotting import panels, set_limits, title
from robustlr.results.report.threats import Entry, Judged
from robustlr.results.stats import finite, interval

KEYS = {"clean": "per_class_acc", "robust": "robust_per_class_acc"}


@dataclass(frozen=True)
class ClassSpread:
    """One trial's per-class accuracies, summarised (fractions)."""

    mean: float  # mean over classes, each class counted once
    worst: float
    worst_class: int  # the lowest index among equally bad classes

    @property
    def gap(self) -> float:
        return self.mean - self.worst


def worst_class(values: Any) -> ClassSpread | None:
    """The worst class of a per-class accuracy array; classes without a finite value (absent
    from the test set) are skipped; None when there is none."""
    if not isinstance(values, (list, tuple)):
        return None
    present = [(v, i) for i, v in enumerate(finite(x) for x in values) if v is not None]
    if not present:
        return None
    worst, index = min(present)
    return ClassSpread(sum(v for v, _ in present) / len(present), worst, index)


@dataclass(frozen=True)
class SliceSummary:
    """Seed means of the per-trial spreads of one schedule, and its most frequent worst class."""

    mean: float
    worst: float
    worst_class: int | None
    seeds: int


def summarise(runs: list[dict], kind: str) -> SliceSummary:
    spreads = [s for s in (worst_class(r.get(KEYS[kind])) for r in runs) if s is not None]
    if not spreads:
        return SliceSummary(math.nan, math.nan, None, 0)
    common = Counter(s.worst_class for s in spreads).most_common(1)[0][0]
    return SliceSummary(interval([s.mean for s in spreads]).mean,
                        interval([s.worst for s in spreads]).mean, common, len(spreads))


def _cell(summary: SliceSummary) -> list[str]:
    if not summary.seeds:
        return ["-", "-", "-"]
    return [f"{100 * summary.mean:.1f}", f"{100 * summary.worst:.1f} (class {summary.worst_class})",
            f"{100 * (summary.mean - summary.worst):.1f}"]


def slices_section(document: Document, summaries: list[dict], rows: list[dict]) -> None:
    """The table and the figure, over the verdict's entries (each schedule at its chosen LR
    scale); skips itself when no trial recorded per-class accuracy."""
    judged = [j for j in document.verdicts
              if any(summarise(e.runs, "clean").seeds for e in j.entries)]
    if not judged:
        return
    robust = any(summarise(e.runs, "robust").seeds for j in judged for e in j.entries)
    document.heading("Worst class")
    document.text("Per threat model and schedule: accuracy averaged over classes (each class "
                  "once), the worst class's accuracy (which class was worst in most seeds) and "
                  "the gap between them, in points; seed means of each trial's own worst class. "
                  "The worst class is what a deployment fails on first.")
    table = []
    for item in judged:
        for entry in item.entries:
            cells = _cell(summarise(entry.runs, "clean"))
            if robust:
                cells += _cell(summarise(entry.runs, "robust"))
            table.append([item.threat.name, entry.label, *cells])
    header = ["threat model", "schedule", "clean: class mean %", "clean: worst class %",
              "clean: gap"]
    if robust:
        header += ["robust: class mean %", "robust: worst class %", "robust: gap"]
    document.table(header, table, name="worst_class")
    _figure(document, judged, robust)


def _figure(document: Document, judged: list[Judged], robust: bool) -> None:
    most = max(len(j.entries) for j in judged)
    figure, axes_list = panels(len(judged), height=0.28 * most + 1.3)
    for axes, item in zip(axes_list, judged):
        _panel(axes, item.entries, robust, document.palette)
        axes.set_title(title(item.threat.name), fontsize=8)
    document.plot("worst_class", figure,
                  "Worst class against the mean over classes, per schedule (seed means): a line "
                  "from the mean (circle) to the worst class (cross); filled: clean, hollow: "
                  "robust accuracy")


def _panel(axes, entries: list[Entry], robust: bool, palette) -> None:
    values: list[float] = []
    for row, entry in enumerate(entries):
        y = len(entries) - row
        colour = palette(entry.schedule)
        for kind, offset, face in (("clean", 0.12, colour), ("robust", -0.12, "white")):
            if kind == "robust" and not robust:
                continue
            summary = summarise(entry.runs, kind)
            if not summary.seeds:
                continue
            mean, worst = 100 * summary.mean, 100 * summary.worst
            axes.plot([worst, mean], [y + offset] * 2, color=colour, lw=1, clip_on=False)
            axes.plot([mean], [y + offset], "o", ms=5, mfc=face, mec=colour, clip_on=False)
            axes.plot([worst], [y + offset], "x", ms=5, color=colour, clip_on=False)
            values += [mean, worst]
    set_limits(axes, "x", "clean_acc", values)
    axes.set_ylim(0.4, len(entries) + 0.6)
    axes.set_yticks(range(len(entries), 0, -1), [e.label for e in entries], fontsize=6)
    axes.set_xlabel("accuracy %", fontsize=7)
    axes.tick_params(axis="x", labelsize=6)
