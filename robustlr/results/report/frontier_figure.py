"""The verdict's figure: one frontier panel per threat model (small multiples), seed means
with 95% intervals clipped to each metric's range, one colour per schedule, the Pareto front
starred and joined, direct labels on the front and the leader. A DP threat model is one
epsilon level, so its panel is a dot plot of clean accuracy per schedule beside the same
schedule without DP (the cost of privacy), not a scatter along an epsilon axis that does not
vary. Points sit on the plot even at 0% or 100% (never clipped by the frame)."""

from __future__ import annotations

import math

from robustlr.results.report.defence_cost import mean_of, reference_entries
from robustlr.results.report.document import Document
from robustlr.results.report.plotting import axis_label, bounded, label_points, panels, scale, set_limits, title
from robustlr.results.report.threats import NAMES, Entry, Judged, Threat, better
from robustlr.results.stats import Interval


def frontiers(document: Document, judged: list[Judged]) -> None:
    plotted = [j for j in judged if any(_point(j.threat, e) for e in j.entries)]
    missing = [j.threat.name for j in judged if j not in plotted]
    if missing:
        document.text("No frontier panel for " + ", ".join(missing) + ": no finite values.")
    if not plotted:
        return
    figure, axes_list = panels(len(plotted), height=2.35)
    references = reference_entries(judged)
    for axes, item in zip(axes_list, plotted):
        if one_epsilon(item) and references:
            _privacy_cost(axes, item, references, document.palette)
        else:
            _panel(axes, item, document.palette)
    names = "; ".join(f"{j.threat.name}: {NAMES.get(j.threat.y, j.threat.y)} against "
                      f"{NAMES.get(j.threat.x, j.threat.x)}" for j in plotted
                      if not (one_epsilon(j) and references))
    dots = [j.threat.name for j in plotted if one_epsilon(j) and references]
    document.plot("verdict_frontiers", figure,
                  f"Frontier per threat model ({names}). Seed means with 95% intervals, one "
                  "colour per schedule in every figure; stars and the line: the Pareto front "
                  "(no other schedule is better on both axes); labels: front and leader."
                  + (f" {', '.join(dots)}: clean accuracy per schedule with DP (filled) and "
                     "the same schedule without DP (hollow, standard training)." if dots else ""))


def one_epsilon(judged: Judged) -> bool:
    """A DP threat model whose schedules all spent (about) the same epsilon: an epsilon axis
    would only spread noise, so the panel shows accuracy against the non-private reference."""
    if judged.threat.x != "epsilon":
        return False
    spent = [e.means["epsilon"].mean for e in judged.entries if e.means["epsilon"].n]
    return bool(spent) and max(spent) - min(spent) <= 0.05 * max(spent)


def _unclipped(container) -> None:
    for artist in container.get_children():  # a point at 0% or 100% is drawn whole
        artist.set_clip_on(False)


def _privacy_cost(axes, judged: Judged, references: dict[str, Entry], palette) -> None:
    """Dot plot: each schedule's clean accuracy under DP (filled, with its 95% interval)
    joined to the same schedule without DP (hollow), leader on top."""
    entries = judged.entries
    values = []
    for row, entry in enumerate(entries):
        y = len(entries) - row
        colour = palette(entry.schedule)
        acc = entry.means["clean_acc"]
        mx = 100 * acc.mean
        err = [[mx - bounded("clean_acc", 100 * acc.low)], [bounded("clean_acc", 100 * acc.high) - mx]]
        reference = references.get(entry.schedule)
        if reference is not None:
            rx = 100 * mean_of(reference.runs, "clean_acc")
            axes.plot([rx, mx], [y, y], color="#999999", lw=1, zorder=1)
            axes.plot([rx], [y], "o", ms=6, mfc="white", mec=colour, mew=1.2, zorder=3,
                      clip_on=False)
            values.append(rx)
        _unclipped(axes.errorbar([mx], [y], xerr=err, fmt="o", ms=5, color=colour, capsize=2,
                                 lw=0.8, zorder=2))
        values += [mx - err[0][0], mx + err[1][0]]
    set_limits(axes, "x", "clean_acc", values)
    axes.set_ylim(0.4, len(entries) + 0.6)
    axes.set_yticks(range(len(entries), 0, -1), [e.label for e in entries], fontsize=6)
    for tick, entry in zip(axes.get_yticklabels(), entries):
        tick.set_color(palette(entry.schedule))
    spent = [e.means["epsilon"].mean for e in entries if e.means["epsilon"].n]
    axes.set_xlabel("clean test accuracy % (hollow: without DP)", fontsize=7)
    axes.set_title(title(f"{judged.threat.name} (ε spent {sum(spent) / len(spent):.2f}) "
                         "against no DP"), fontsize=8)
    axes.tick_params(axis="x", labelsize=6)


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
        _unclipped(axes.errorbar([mx], [my], xerr=xerr, yerr=yerr, fmt="*" if entry.front else "o",
                                 ms=9 if entry.front else 4, color=colour, capsize=2, lw=0.8,
                                 alpha=1.0 if entry.front or entry is leader else 0.6))
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
    axes.set_title(title(threat.name + ("" if few else f" ({len(judged.entries)} schedules; "
                                        "labels: front and leader)")), fontsize=8)
    axes.tick_params(labelsize=6)

