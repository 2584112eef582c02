"""Report section: how sensitive each schedule is to its base LR. For every (schedule, regime)
run at two or more LR scales, the seed mean of clean (and, where measured, robust) accuracy at
each scale, the best scale and the spread between the best and the worst scale: a schedule
that is best at one tuned LR but collapses at twice it is a riskier choice than one a little
worse everywhere. Skips itself when no group has two LR scales."""

from __future__ import annotations

from robustlr.results.report.document import Document
from robustlr.results.report.plotting import bounded, legend, panels, set_limits
from robustlr.results.stats import group, interval, with_arms

METRICS = (("clean_acc", "clean accuracy %"), ("robust_acc", "robust accuracy %"))


def sensitivity_section(document: Document, summaries: list[dict], rows: list[dict]) -> None:
    usable = [r for r in with_arms(summaries) if r.get("status") not in ("failed", "diverged")]
    curves = {}
    for (schedule, regime), runs in group(usable, ("schedule", "regime")).items():
        by_scale = group(runs, ("lr_scale",))
        if len(by_scale) >= 2:
            curves[(schedule, regime)] = {
                scale: {key: interval([r.get(key) for r in seeded]) for key, _ in METRICS}
                for (scale,), seeded in sorted(by_scale.items())}
    if not curves:
        return
    metrics = [(key, label) for key, label in METRICS
               if any(point[key].n for curve in curves.values() for point in curve.values())]
    document.heading("Sensitivity to the LR scale")
    document.text("Seed means at each LR scale (base LR x scale). Spread: best minus worst "
                  "scale, in points; a small spread means the schedule forgives a mistuned LR.")
    table = []
    for (schedule, regime), curve in curves.items():
        for key, label in metrics:
            means = {scale: point[key].mean for scale, point in curve.items() if point[key].n}
            if len(means) < 2:
                continue
            best = max(means, key=lambda scale: means[scale])
            cells = ", ".join(f"x{scale:g}: {means[scale] * 100:.1f}" for scale in means)
            spread = (means[best] - min(means.values())) * 100
            table.append([schedule, regime, label, cells, f"x{best:g}", f"{spread:.1f}"])
    table.sort(key=lambda row: (row[2], float(row[5])))
    document.table(["schedule", "regime / poison / filter", "metric", "mean at each scale",
                    "best scale", "spread (points)"], table)
    _figure(document, curves, metrics)


def _figure(document: Document, curves: dict, metrics: list[tuple[str, str]]) -> None:
    """One panel per (regime, metric) that has a curve; the others are omitted."""
    regimes = list(dict.fromkeys(regime for _, regime in curves))
    filled = [(regime, key, label) for regime in regimes for key, label in metrics
              if any(its == regime and any(p[key].n for p in curve.values())
                     for (_, its), curve in curves.items())]
    if not filled:
        return
    figure, axes_list = panels(len(filled))
    for axes, (regime, key, label) in zip(axes_list, filled):
        shown = []
        for (schedule, its_regime), curve in curves.items():
            points = [(scale, p[key]) for scale, p in curve.items() if p[key].n]
            if its_regime != regime or not points:
                continue
            means = [p.mean * 100 for _, p in points]
            lows = [bounded(key, p.low * 100) for _, p in points]
            highs = [bounded(key, p.high * 100) for _, p in points]
            axes.errorbar([s for s, _ in points], means,
                          yerr=[[m - lo for m, lo in zip(means, lows)],
                                [hi - m for m, hi in zip(means, highs)]],
                          marker="o", ms=3, capsize=2, lw=1.2, label=schedule,
                          color=document.palette(schedule))
            shown += lows + highs
        set_limits(axes, "y", key, shown)
        axes.set_xscale("log", base=2)
        axes.set_xlabel("LR scale", fontsize=7)
        axes.set_ylabel(label, fontsize=7)
        axes.set_title(regime, fontsize=8)
        axes.tick_params(labelsize=6)
        legend(axes)
    document.plot("lr_sensitivity", figure,
                  "Accuracy against the LR scale per schedule and regime (seed means, 95% "
                  "intervals; legends only where they stay short, colours as everywhere)")
