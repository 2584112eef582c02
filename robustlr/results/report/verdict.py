"""The report's opening: per threat model, the verdict a reader can act on ("Under pgd_at:
onecycle and cosine are tied within noise; constant is 4.1 ± 1.2 points less robust"), the
frontier of that threat model alone (small multiples, one colour per schedule) and its ranking.

Differences are paired by seed against the leading schedule, tested with a paired t-test and
Holm-corrected over the comparisons of the threat model; with one seed nothing is called a
difference."""

from __future__ import annotations

import math
from dataclasses import dataclass

from robustlr.results.report.document import Document
from robustlr.results.report.plotting import axis_label, bounded, label_points, panels, scale, set_limits
from robustlr.results.report.threats import Threat, better, group_label, select_scales, split
from robustlr.results.stats import Interval, Paired, group, holm, interval, paired

ALPHA = 0.05
NAMES = {"clean_acc": "clean accuracy", "robust_acc": "robust accuracy", "asr": "attack success",
         "epsilon": "epsilon", "train_seconds": "training time"}
WORSE = {"clean_acc": "less accurate", "robust_acc": "less robust",
         "asr": "more often backdoored (ASR)"}


@dataclass
class Entry:
    schedule: str
    label: str
    runs: list[dict]
    means: dict[str, Interval]
    versus: Paired | None = None  # this minus the leader, on the primary metric
    p_holm: float = math.nan
    front: bool = False


@dataclass
class Judged:
    threat: Threat
    entries: list[Entry]  # ranked, leader first
    seeds: int

    def tied(self, entry: Entry) -> bool:
        return not (math.isfinite(entry.p_holm) and entry.p_holm < ALPHA)


def judge(threat: Threat, records: list[dict], select_lr: str = "none",
          names: dict[str, str] | None = None) -> Judged:
    """Rank the schedules of one threat model; ``names`` shortens schedule specs."""
    names = names or {}
    kept, chosen = select_scales(records, threat, select_lr)
    entries = []
    for (schedule, lr_scale), runs in group(kept, ("schedule", "lr_scale")).items():
        means = {k: interval([r.get(k) for r in runs]) for k in {threat.x, threat.y, threat.primary}}
        label = group_label(names.get(schedule, schedule), lr_scale,
                            {names.get(k, k): v for k, v in chosen.items()})
        entries.append(Entry(schedule, label, runs, means))
    sign = better(threat.primary)
    entries.sort(key=lambda e: -sign * _value(e.means[threat.primary].mean, sign))
    if entries:
        leader = {r.get("seed"): r.get(threat.primary) for r in entries[0].runs}
        for entry in entries[1:]:
            entry.versus = paired({r.get("seed"): r.get(threat.primary) for r in entry.runs}, leader)
        adjusted = holm([e.versus.p for e in entries[1:] if e.versus is not None])
        for entry, p in zip(entries[1:], adjusted):
            entry.p_holm = p
    _mark_front(threat, entries)
    return Judged(threat, entries, max((len(e.runs) for e in entries), default=0))


def _value(mean: float, sign: int) -> float:
    return mean if math.isfinite(mean) else -sign * math.inf


def _mark_front(threat: Threat, entries: list[Entry]) -> None:
    sx, sy = better(threat.x), better(threat.y)
    points = [(sx * e.means[threat.x].mean, sy * e.means[threat.y].mean) for e in entries]
    for entry, (x, y) in zip(entries, points):
        entry.front = math.isfinite(x) and math.isfinite(y) and not any(
            a >= x and b >= y and (a > x or b > y) for a, b in points
            if math.isfinite(a) and math.isfinite(b))


def _amount(metric: str, value: float) -> str:
    return f"{value * scale(metric):.1f}{'%' if scale(metric) == 100 else ''}"


def _names(entries: list[Entry], limit: int = 5) -> str:
    names = [e.label for e in entries[:limit]]
    more = len(entries) - limit
    text = ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1]
    return text + (f" (and {more} more)" if more > 0 else "")


def sentences(judged: Judged) -> str:
    """One or two sentences about one threat model."""
    threat, entries = judged.threat, judged.entries
    metric = threat.primary
    leader = entries[0]
    what = NAMES.get(metric, metric)
    head = f"Under {threat.name}, by {what}"
    if len(entries) == 1:
        return f"{head}: only {leader.label} ran ({_amount(metric, leader.means[metric].mean)})."
    if judged.seeds < 2:
        order = ", ".join(f"{e.label} ({_amount(metric, e.means[metric].mean)})" for e in entries[:3])
        return (f"{head} (1 seed: no noise estimate, nothing here is a tested difference): "
                f"{order}{', ...' if len(entries) > 3 else ''}.")
    tied = [e for e in entries[1:] if judged.tied(e)]
    worse = [e for e in entries[1:] if not judged.tied(e)]
    text = (f"{head} (paired over {judged.seeds} seeds, Holm-corrected): {leader.label} leads "
            f"({_amount(metric, leader.means[metric].mean)})")
    text += f"; {_names(tied)} {'is' if len(tied) == 1 else 'are'} tied with it within noise" \
        if tied else "; every other schedule is reliably behind"
    if worse:
        shown = worse[-2:] if len(worse) > 2 else worse
        gaps = ", ".join(f"{e.label} is {abs(e.versus.mean) * scale(metric):.1f} ± "
                         f"{e.versus.half * scale(metric):.1f} points "
                         f"{WORSE.get(metric, 'worse')}" for e in shown if e.versus)
        text += f". {gaps}" + (f" (the two furthest of {len(worse)} behind)"
                               if len(worse) > 2 else "")
    return text + "."


def verdict_section(document: Document, summaries: list[dict], select_lr: str = "none") -> list[Judged]:
    threats = split(summaries)
    if not threats:
        document.text("No finished trial: nothing to judge (see 'Trials that did not finish').")
        return []
    judged = [judge(t, records, select_lr, document.palette.names)
              for t, records in threats.items()]
    document.heading("Verdict per threat model")
    note = (" Each schedule is shown at the LR scale with the best validation accuracy "
            "(select_lr: validation); test numbers never chose it." if select_lr == "validation"
            else "")
    document.text("Schedules are compared only within a threat model. Accuracies in percent "
                  "on the test set; robust accuracy is each trial's strongest evaluation "
                  "(robust_acc)." + note)
    document.bullets([sentences(j) for j in judged])
    _frontiers(document, judged)
    return judged


def _frontiers(document: Document, judged: list[Judged]) -> None:
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
    axes.plot([p[0] for p in front], [p[1] for p in front], color="#d62728", lw=1.5,
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


def ranking_section(document: Document, judged: list[Judged]) -> None:
    """The ranking of every threat model: one table, threat models in reading order."""
    if not judged:
        return
    table = []
    for item in judged:
        threat = item.threat
        metrics = list(dict.fromkeys([threat.primary, threat.x, threat.y]))
        for rank, entry in enumerate(item.entries, 1):
            cells = [f"{NAMES.get(m, m)} {entry.means[m].text(scale=scale(m), digits=1 if scale(m) == 100 else 2)}"
                     for m in metrics]
            versus = "leader" if entry.versus is None else _versus(entry, item, threat.primary)
            table.append([threat.name, str(rank), entry.label, str(len(entry.runs)),
                          "; ".join(cells), versus, "yes" if entry.front else ""])
    document.heading("Ranking per threat model")
    document.text("Ranked by the threat model's main metric (seed mean ± 95% t-interval). "
                  "'vs leader': paired difference ± 95% interval over shared seeds, and the "
                  "Holm-corrected p-value of a paired t-test.")
    document.table(["threat model", "rank", "schedule", "seeds", "metrics", "vs leader",
                    "on frontier"], table)


def _versus(entry: Entry, item: Judged, metric: str) -> str:
    diff = entry.versus
    if diff is None or diff.n == 0:
        return "no shared seed"
    if diff.n == 1:
        return f"{diff.mean * scale(metric):+.1f} (1 seed)"
    verdict = "tied" if item.tied(entry) else "behind"
    return (f"{diff.mean * scale(metric):+.1f} ± {diff.half * scale(metric):.1f}, "
            f"p={entry.p_holm:.3f} ({verdict})")
