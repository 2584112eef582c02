"""Report sections for clean training: the status line, LR curves, accuracy per epoch per
threat model, cost, and the trials that did not finish (sensitivity to the LR scale is its
own section, report/sensitivity.py)."""

from __future__ import annotations

import math
from collections import defaultdict

from matplotlib.figure import Figure

from robustlr import schedules
from robustlr.results.report.document import Document
from robustlr.results.report.plotting import MAX_LEGEND, label_line_ends, legend, panels
from robustlr.results.report.threats import split
from robustlr.results.stats import group, interval

_STYLES = ("-", "--", ":", "-.")


def percent(values: list) -> str:
    return interval(values).text(scale=100.0)


def status_line(document: Document, summaries: list[dict], setup: str = "") -> None:
    """How many trials ended how, then ``setup`` (what was audited)."""
    counts: dict[str, int] = defaultdict(int)
    for record in summaries:
        counts[record.get("status", "?")] += 1
    seeds = len({r.get("seed") for r in summaries})
    bad = counts.get("failed", 0) + counts.get("diverged", 0)
    document.text(f"{len(summaries)} trials ({seeds} seed{'s' if seeds != 1 else ''}): " +
                  ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + "." +
                  (f" {bad} did not finish and are left out of every comparison (listed at "
                   "the end)." if bad else "") + (f" {setup}" if setup else ""))


def clean_sections(document: Document, summaries: list[dict], rows: list[dict]) -> None:
    _lr_curves(document, summaries)
    _accuracy_per_epoch(document, summaries, rows)
    _cost(document, summaries)


def failures_section(document: Document, summaries: list[dict], rows: list[dict]) -> None:
    failed = [r for r in summaries if r.get("status") in ("failed", "diverged")]
    if failed:
        document.heading("Trials that did not finish")
        document.table(["trial", "schedule", "regime", "LR scale", "seed", "status", "error"],
                       [[r["trial"], r["schedule"], r["regime"], f"{r['lr_scale']:g}",
                         str(r["seed"]), r["status"], r.get("error") or ""] for r in failed])


def _lr_curves(document: Document, summaries: list[dict]) -> None:
    specs = list(dict.fromkeys(r["schedule"] for r in summaries))
    if not specs:
        return
    figure = Figure(figsize=(7, 3.6))
    axes = figure.subplots()
    progress = [i / 400 for i in range(400)]
    lines, metric_driven = [], False
    for spec in specs:
        schedule = schedules.parse(spec)
        metric_driven = metric_driven or schedule.metric_driven
        values = schedules.values(schedule, 400)
        axes.plot(progress, values, label=spec, color=document.palette(spec), lw=1.2)
        lines.append((document.palette.name(spec), progress, list(values), document.palette(spec)))
    axes.set_xlabel("training progress (optimizer steps / planned steps)")
    axes.set_ylabel("LR multiplier")
    if len(specs) <= MAX_LEGEND:
        legend(axes, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        label_line_ends(axes, lines)
    document.heading("Learning-rate schedules")
    document.plot("lr_curves", figure, "LR multiplier applied at every optimizer step"
                  + (" (metric-driven schedules shown without their reductions)"
                     if metric_driven else ""))


def _curves(records: list[dict], by_trial: dict, key: str) -> dict[tuple, list[float]]:
    """Seed-mean curve of ``key`` per (schedule, LR scale), up to the shortest seed."""
    curves = {}
    for (schedule, scale), runs in group(records, ("schedule", "lr_scale")).items():
        series = [[row.get(key) for row in by_trial[r["trial"]]] for r in runs]
        length = min((len(s) for s in series), default=0)
        mean = []
        for i in range(length):
            present = [s[i] for s in series if isinstance(s[i], (int, float))]
            mean.append(100 * sum(present) / len(present) if present else math.nan)
        if any(math.isfinite(v) for v in mean):
            curves[(schedule, scale)] = mean
    return curves


def per_threat_curves(document: Document, summaries: list[dict], rows: list[dict], key: str,
                      ylabel: str) -> tuple[Figure | None, str]:
    """Small multiples of ``key`` per epoch, one panel per threat model with data; the
    second value says which threat models had none (their panel is omitted)."""
    by_trial = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["epoch"]):
        by_trial[row["trial"]].append(row)
    filled: list[tuple] = []
    empty: list[tuple] = []
    for threat, records in split(summaries).items():
        curves = _curves(records, by_trial, key)
        (filled if curves else empty).append((threat, curves))
    note = ("No panel for " + ", ".join(t.name for t, _ in empty) + f": no {key} per epoch."
            if empty else "")
    if not filled:
        return None, note
    figure, axes_list = panels(len(filled))
    for axes, (threat, curves) in zip(axes_list, filled):
        scales = sorted({scale for _, scale in curves})
        lines = []
        for (schedule, scale), mean in curves.items():
            epochs = list(range(1, len(mean) + 1))
            name = document.palette.name(schedule) + ("" if scale == 1.0 else f" x{scale:g}")
            colour = document.palette(schedule)
            axes.plot(epochs, mean, color=colour, lw=1, linestyle=_STYLES[scales.index(scale) % 4])
            lines.append((name, epochs, mean, colour))
        values = [v for _, _, m, _ in lines for v in m if math.isfinite(v)]
        axes.set_ylim(max(0.0, min(values) - 2), min(100.0, max(values) + 2))
        label_line_ends(axes, lines)
        axes.set_title(threat.name, fontsize=8)
        axes.set_xlabel("epoch", fontsize=7)
        axes.set_ylabel(ylabel, fontsize=7)
        axes.tick_params(labelsize=6)
    return figure, note


def _accuracy_per_epoch(document: Document, summaries: list[dict], rows: list[dict]) -> None:
    figure, note = per_threat_curves(document, summaries, rows, "test_acc", "test accuracy %")
    document.heading("Accuracy per epoch")
    if note:
        document.text(note)
    if figure is not None:
        document.plot("accuracy_per_epoch", figure, "Test accuracy per epoch per threat model "
                      "(mean over seeds; every LR scale, line style by scale)")


def _cost(document: Document, summaries: list[dict]) -> None:
    groups = {key: runs for key, runs in group(summaries, ("schedule", "regime")).items()
              if interval([r.get("train_seconds") for r in runs]).n}
    if not groups:
        return
    labels = [f"{s} / {r}" for s, r in groups]
    seconds = [interval([x.get("train_seconds") for x in runs]).mean for runs in groups.values()]
    figure = Figure(figsize=(7, 0.22 * len(labels) + 1.2))
    axes = figure.subplots()
    axes.barh(labels, seconds, color=[document.palette(s) for s, _ in groups])
    axes.invert_yaxis()
    axes.set_xlim(0, max(seconds) * 1.05)
    axes.tick_params(axis="y", labelsize=6)
    axes.set_xlabel("training seconds per trial (mean over seeds and LR scales)")
    document.heading("Cost")
    document.plot("cost", figure, "Training time per trial")
