"""Report section for trade-offs: Pareto frontiers of the (schedule, regime) groups for clean
accuracy against robust accuracy, epsilon, attack success and cost, each point the seed mean
with its 95% t-interval; a paired-by-seed comparison of every schedule against the best one in
its setting, so a reader sees which differences are real; and a ranking per objective.
Skips itself when the run has fewer than two groups."""

from __future__ import annotations

import math
from dataclasses import dataclass

from matplotlib.figure import Figure

from robustlr.results.report.document import Document
from robustlr.results.report.robustness import _number, _pareto
from robustlr.results.stats import Interval, group, interval, with_arms

KEYS = ("schedule", "regime", "lr_scale")  # regime names the poison and filter (with_arms)


@dataclass(frozen=True)
class Objective:
    key: str
    label: str
    higher_is_better: bool
    scale: float = 1.0
    digits: int = 2

    def text(self, value: Interval) -> str:
        return value.text(scale=self.scale, digits=self.digits)


CLEAN = Objective("clean_acc", "clean accuracy %", True, 100.0, 1)
AGAINST = (Objective("robust_acc", "robust accuracy %", True, 100.0, 1),
           Objective("epsilon", "epsilon spent", False),
           Objective("asr", "attack success rate %", False, 100.0, 1),
           Objective("train_seconds", "training seconds per trial", False))


def frontier_section(document: Document, summaries: list[dict], rows: list[dict]) -> None:
    usable = [r for r in with_arms(summaries) if r.get("status") not in ("failed", "diverged")
              and _number(r.get("clean_acc")) is not None]
    groups = group(usable, KEYS)
    if len(groups) < 2:
        return
    objectives = [o for o in AGAINST
                  if sum(any(_number(r.get(o.key)) is not None for r in runs)
                         for runs in groups.values()) >= 2]
    means = {key: {o.key: interval([r.get(o.key) for r in runs]) for o in (CLEAN, *objectives)}
             for key, runs in groups.items()}
    document.heading("Trade-off frontiers")
    document.text(
        "Each point is a (schedule, regime) group: the mean across seeds with 95% t-intervals "
        "on both axes. Stars mark the Pareto frontier: no other group is at least as good on "
        "both axes and better on one (judged on the means). Failed and diverged trials are "
        "left out.")
    fronts = {o.key: _figure(document, o, means) for o in objectives}
    _ranking(document, [CLEAN, *objectives], means, fronts)
    _paired(document, usable, [CLEAN, *objectives])


def _label(key: tuple) -> str:
    schedule, regime, scale = key
    return f"{schedule} / {regime}" + ("" if scale == 1.0 else f" x{scale:g}")


def _figure(document: Document, objective: Objective, means: dict) -> set[tuple]:
    """One clean-accuracy-against-``objective`` figure; returns the groups on its frontier."""
    keys = [k for k, m in means.items() if m[objective.key].n and m[CLEAN.key].n]
    sign = 1.0 if objective.higher_is_better else -1.0
    front = {k for k, best in zip(keys, _pareto([(sign * means[k][objective.key].mean,
                                                  means[k][CLEAN.key].mean) for k in keys])) if best}
    figure = Figure(figsize=(7.5, 4.4))
    axes = figure.subplots()
    for key in keys:
        x, y = means[key][objective.key], means[key][CLEAN.key]
        axes.errorbar([x.mean * objective.scale], [y.mean * 100], fmt="o", ms=4, capsize=2, lw=1,
                      xerr=[[(x.mean - x.low) * objective.scale], [(x.high - x.mean) * objective.scale]],
                      yerr=[[(y.mean - y.low) * 100], [(y.high - y.mean) * 100]], label=_label(key))
    line = sorted((means[k][objective.key].mean * objective.scale, means[k][CLEAN.key].mean * 100, k)
                  for k in front)
    axes.plot([p[0] for p in line], [p[1] for p in line], color="#d62728", lw=2, alpha=0.35, zorder=1)
    axes.scatter([p[0] for p in line], [p[1] for p in line], marker="*", s=160, color="#d62728",
                 label="frontier", zorder=3)
    for index, (x, y, key) in enumerate(line):  # alternate offsets: close points stay legible
        axes.annotate(_label(key), (x, y), xytext=(4, 4 if index % 2 == 0 else -11),
                      textcoords="offset points", fontsize=7)
    axes.set_xlabel(objective.label + (" (higher is better)" if objective.higher_is_better
                                       else " (lower is better)"))
    axes.set_ylabel("clean test accuracy %")
    axes.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    document.plot(f"frontier_{objective.key}", figure,
                  f"Clean accuracy against {objective.label}: seed means with 95% intervals; "
                  "stars are the Pareto frontier")
    return front


def _rank(objective: Objective, means: dict) -> dict[tuple, int]:
    finite = [k for k, m in means.items() if m[objective.key].n]
    order = sorted(finite, key=lambda k: means[k][objective.key].mean,
                   reverse=objective.higher_is_better)
    return {key: rank for rank, key in enumerate(order, 1)}


def _ranking(document: Document, objectives: list[Objective], means: dict,
             fronts: dict[str, set]) -> None:
    ranks = {o.key: _rank(o, means) for o in objectives}
    table = []
    for key in sorted(means, key=lambda k: ranks[CLEAN.key].get(k, math.inf)):
        cells = [f"{o.text(means[key][o.key])} (#{ranks[o.key][key]})" if key in ranks[o.key]
                 else "-" for o in objectives]
        on = [o.label.split(" %")[0] for o in objectives if key in fronts.get(o.key, ())]
        table.append([_label(key), str(means[key][CLEAN.key].n), *cells, ", ".join(on) or "-"])
    document.heading("Ranking per objective")
    document.table(["group", "seeds", *[o.label for o in objectives], "on the frontier of"], table)


def _paired(document: Document, usable: list[dict], objectives: list[Objective]) -> None:
    table = []
    for (regime, scale), records in group(usable, ("regime", "lr_scale")).items():
        by_schedule = group(records, ("schedule",))
        if len(by_schedule) < 2:
            continue
        for objective in objectives:
            seeds = {s: {r.get("seed"): _number(r.get(objective.key)) for r in runs}
                     for (s,), runs in by_schedule.items()}
            means = {s: interval(list(v.values())) for s, v in seeds.items()}
            ranked = sorted((s for s in means if means[s].n), key=lambda s: means[s].mean,
                            reverse=objective.higher_is_better)
            for schedule in ranked[1:]:
                table.append([regime + ("" if scale == 1.0 else f" x{scale:g}"), objective.label,
                              schedule, ranked[0], *_difference(objective, seeds[schedule],
                                                                seeds[ranked[0]])])
    if table:
        document.heading("Each schedule against the best")
        document.text("Per setting and objective, each schedule minus the best schedule, paired "
                      "by seed: mean difference ± 95% paired t-interval. 'real' when the interval "
                      "excludes zero, else within the seed noise.")
        document.table(["regime / poison / filter", "objective", "schedule", "best", "pairs",
                        "difference", "verdict"], table)


def _difference(objective: Objective, values: dict, best: dict) -> list[str]:
    pairs = [values[s] - best[s] for s in values
             if s in best and values[s] is not None and best[s] is not None]
    if len(pairs) < 2:
        return [str(len(pairs)), "-", "1 seed" if pairs else "no shared seed"]
    diff = interval(pairs)
    real = diff.low > 0 or diff.high < 0
    return [str(len(pairs)), diff.text(scale=objective.scale, digits=objective.digits),
            "real" if real else "within noise"]
