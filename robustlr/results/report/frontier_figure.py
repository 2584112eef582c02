"""The verdict's figure: one frontier panel per threat model (small multiples), seed means
with 95% intervals clipped to each metric's range, one colour per schedule, the Pareto front
starred and joined, direct labels on the front and the leader."""

from __future__ import annotations

import math

from robustlr.results.report.document import Document
from robustlr.results.report.plotting import axis_label, bounded, label_points, panels, scale, set_limits
from robustlr.results.report.threats import NAMES, Entry, Judged, Threat, better
from robustlr.results.stats import Interval


def frontiers(document: Document, judged: list[Judged]) -> None:
    plotted = [j for j in judged if any(_point(j.threat, e) for e in j.entries)]
    missing = [j.threat.name for j in judged if j not in plotted]
    if missing:
        document.text("No frontier panel for " + ", ".join(missing) + ": no finite values.")
    if not plotted:
        return
    figure, axes_list = panels(len(plotted))
    for axes, item in zip(axes_list, plotted):
        _panel(axes, item, document.palette)
    names = "; ".join(f"{j.threat.name}: {NAMES.get(j.threat.y, j.threat.y)} against "
                      f"{NAMES.get(j.threat.x, j.threat.x)}" for j in plotted)
    document.plot("verdict_frontiers", figure,
                  f"Frontier per threat model ({names}). Seed means with 95% intervals, one "
                  "colour per schedule in every figure; stars and the line: the Pareto front "
                  "(no other schedule is better on both axes); labels: front and leader.")


def _point(threat: Threat, entry: Entry) -> tuple[Interval, Interval] | None:
    x, y = entry.means[threat.x], entry.means[threat.y]
    return (x, y) if x.n and y.n and math.isfinite(x.mean + y.mean) else None


def _panel(axes, judged: Judged, palette) -> None:
    threat = judged.threat
    sx, sy = scale(threat.x), scale(threat.y)
    xs, ys, names = [], [], []
    leader = judged.entries[0]
    few = len(judged.entries) <= 8
    for entry in judged.entries:
        point = _point(threat, entry)
        if point is None:
            continue
        x, y = point
        mx, my = x.mean * sx, y.mean * sy
        xerr = [[mx - bounded(threat.x, x.low * sx)], [bounded(threat.x, x.high * sx) - mx]]
        yerr = [[my - bounded(threat.y, y.low * sy)], [bounded(threat.y, y.high * sy) - my]]
        colour = palette(entry.schedule)
        axes.errorbar([mx], [my], xerr=xerr, yerr=yerr, fmt="*" if entry.front else "o",
                      ms=9 if entry.front else 4, color=colour, capsize=2, lw=0.8,
                      alpha=1.0 if entry.front or entry is leader else 0.6)
        xs += [mx - xerr[0][0], mx + xerr[1][0]]
        ys += [my - yerr[0][0], my + yerr[1][0]]
        if few or entry.front or entry is leader:
            names.append((mx, my, entry.label, colour))
    front = sorted((e.means[threat.x].mean * sx, e.means[threat.y].mean * sy)
                   for e in judged.entries if e.front)
    axes.plot([p[0] for p in front], [p[1] for p in front], color="#333333", lw=1.2,
              alpha=0.35, zorder=1)
    set_limits(axes, "x", threat.x, xs)
    set_limits(axes, "y", threat.y, ys)
    label_points(axes, names)
    arrow = {1: "higher is better", -1: "lower is better"}
    axes.set_xlabel(f"{axis_label(threat.x)} ({arrow[better(threat.x)]})", fontsize=7)
    axes.set_ylabel(axis_label(threat.y), fontsize=7)
    axes.set_title(threat.name + ("" if few else f" ({len(judged.entries)} schedules; "
                                  "labels: front and leader)"), fontsize=8)
    axes.tick_params(labelsize=6)

