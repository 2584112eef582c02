"""Plot schedule multipliers over training into a PNG (matplotlib Agg, no pyplot state)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from robustlr.schedules.base import SCHEDULES, parse, values


def plot(specs: Sequence[str | Mapping[str, Any]], path: str | os.PathLike[str], *,
         steps: int = 1000) -> str:
    """Draw the per-step multipliers of ``specs`` (all schedules at defaults when empty).

    Metric-driven schedules show only their time part and optimizer-based ones a flat 1;
    their labels say so. Returns the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: parsing needs no plots
    from matplotlib.figure import Figure

    schedules = ([parse(spec) for spec in specs] if specs
                 else [SCHEDULES.build(name) for name in SCHEDULES.names()])
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    xs = [s / steps for s in range(steps)]
    for index, schedule in enumerate(schedules):
        label = str(schedule)
        if schedule.metric_driven:
            label += " (time part; metric-driven)"
        if schedule.optimizer_based:
            label += " (optimizer-based)"
        style = ("-", "--", ":")[index // 10 % 3]  # the default colour cycle repeats after 10
        axes.plot(xs, values(schedule, steps), label=label, linewidth=1.2, linestyle=style)
    axes.set_xlabel("training progress (optimizer steps taken / planned)")
    axes.set_ylabel("LR multiplier")
    axes.set_xlim(0.0, 1.0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.savefig(path, dpi=100)
    return os.fspath(path)
