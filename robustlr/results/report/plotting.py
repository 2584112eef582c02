"""What every figure of the report shares: one colour per schedule across all figures, small
multiples without empty panels, axes clipped to the metric's range, and direct labels instead
of long legends (a legend never holds more than :data:`MAX_LEGEND` entries)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence

from matplotlib import colormaps
from matplotlib.figure import Figure

from robustlr.records import PERCENT_METRICS
from robustlr.spec import parse

MAX_LEGEND = 12
AXIS_LABELS = {
    "clean_acc": "clean test accuracy %", "robust_acc": "robust test accuracy %",
    "asr": "attack success rate %", "epsilon": "epsilon spent per trial",
    "train_seconds": "training seconds per trial",
}


class Palette:
    """A fixed colour (and short name) per schedule spec, in the order the run lists them."""

    def __init__(self, schedules: Iterable[str]):
        self.order = list(dict.fromkeys(schedules))
        n = len(self.order)
        cmap = colormaps["tab10" if n <= 10 else "tab20"]
        self.colours = {s: cmap(i % cmap.N) if n <= 20 else colormaps["hsv"](i / n)
                        for i, s in enumerate(self.order)}
        self.names = short_names(self.order) if self.order else {}

    def name(self, schedule: str) -> str:
        """The shortest unambiguous name of ``schedule`` in this run."""
        return self.names.get(schedule, schedule)

    def __call__(self, schedule: str):
        return self.colours.get(schedule, "#777777")


def scale(metric: str) -> float:
    return 100.0 if metric in PERCENT_METRICS else 1.0


def axis_label(metric: str) -> str:
    return AXIS_LABELS.get(metric, metric + (" %" if metric in PERCENT_METRICS else ""))


def bounded(metric: str, value: float) -> float:
    """``value`` (report units) clipped to the metric's range: 0-100 for shares, >= 0 for
    seconds, epsilon and counts, so error bars never leave it."""
    if metric in PERCENT_METRICS:
        return min(100.0, max(0.0, value))
    return max(0.0, value)


def set_limits(axes, axis: str, metric: str, values: Sequence[float]) -> None:
    """Limits that hold ``values`` with a margin, never outside the metric's range."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return
    low, high = min(finite), max(finite)
    pad = max((high - low) * 0.08, 0.5 if metric in PERCENT_METRICS else abs(high) * 0.05 or 0.05)
    low, high = bounded(metric, low - pad), bounded(metric, high + pad)
    if metric in PERCENT_METRICS:
        high = min(100.0, high)
    (axes.set_xlim if axis == "x" else axes.set_ylim)(low, high)


def panels(count: int, *, columns: int = 3, width: float = 3.6,
           height: float = 2.9) -> tuple[Figure, list]:
    """A figure with exactly ``count`` panels in rows of ``columns`` (no empty panel)."""
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    flat = [axes for row in grid for axes in row]
    for axes in flat[count:]:
        figure.delaxes(axes)
    return figure, flat[:count]


def title(text: str, width: int = 50) -> str:
    """A panel title wrapped to the width of a default panel (3.6 in at 8 pt), so neighbouring
    titles never overprint each other."""
    return textwrap.fill(text, width, break_long_words=False, break_on_hyphens=False)


def short_names(specs: Iterable[str]) -> dict[str, str]:
    """A schedule's bare name (``cosine``) where it is unambiguous in the run, else its spec."""
    specs = list(dict.fromkeys(specs))
    names = {spec: parse(spec).name for spec in specs}
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    return {spec: name if counts[name] == 1 else spec for spec, name in names.items()}


def spread(positions: list[float], gap: float) -> list[float]:
    """``positions`` (ascending, axes fraction) moved apart by at least ``gap`` and kept in
    [0, 1] (the gap shrinks when they cannot all fit)."""
    gap = min(gap, 1.0 / max(1, len(positions)))
    placed: list[float] = []
    for y in positions:
        placed.append(max(y, placed[-1] + gap) if placed else max(0.0, y))
    for i in range(len(placed) - 1, -1, -1):  # push down what ran past the top
        ceiling = 1.0 if i == len(placed) - 1 else placed[i + 1] - gap
        placed[i] = min(placed[i], ceiling)
    return placed


def label_line_ends(axes, lines: Sequence[tuple[str, Sequence[float], Sequence[float], object]],
                    *, gap: float = 0.055) -> None:
    """Name each curve beside the right edge at the height of its last point (moved apart
    so names never overlap) instead of a legend. Call after the y limits are set."""
    ends = sorted(((ys[-1], name, colour) for name, xs, ys, colour in lines
                   if xs and math.isfinite(ys[-1])), key=lambda item: item[0])
    if not ends:
        return
    low, high = axes.get_ylim()
    heights = [(y - low) / (high - low) if high > low else 0.5 for y, _, _ in ends]
    for (y, name, colour), height in zip(ends, spread(heights, gap)):
        axes.annotate(name, (1.0, (y - low) / (high - low) if high > low else 0.5),
                      xycoords="axes fraction", xytext=(1.03, height),
                      textcoords="axes fraction", fontsize=6, color=colour, va="center",
                      arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.4})


def label_points(axes, points: list[tuple[float, float, str, object]], *,
                 gap: float = 0.06) -> None:
    """Name scatter points (data x, y) with labels moved apart vertically so they never
    overlap. Call after both axis limits are set."""
    (x0, x1), (y0, y1) = axes.get_xlim(), axes.get_ylim()
    fractions = sorted((((y - y0) / (y1 - y0) if y1 > y0 else 0.5),
                        ((x - x0) / (x1 - x0) if x1 > x0 else 0.5), name, colour)
                       for x, y, name, colour in points)
    heights = spread([f[0] for f in fractions], gap)
    for (fy, fx, name, colour), height in zip(fractions, heights):
        right = fx > 0.6  # names of points near the right edge go to their left
        axes.annotate(name, (fx, fy), xycoords="axes fraction",
                      xytext=(fx + (-0.03 if right else 0.03), height),
                      textcoords="axes fraction", fontsize=6, color=colour, va="center",
                      ha="right" if right else "left",
                      arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.4,
                                  "shrinkA": 0, "shrinkB": 3})


def legend(axes, **options) -> None:
    """A legend only while it stays short; past :data:`MAX_LEGEND` entries the caller labels
    directly."""
    handles, names = axes.get_legend_handles_labels()
    if 0 < len(handles) <= MAX_LEGEND:
        axes.legend(handles, names, **{"fontsize": 6, **options})
