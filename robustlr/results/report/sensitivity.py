"""Report section: how sensitive each schedule is to its base LR. For every (schedule, regime)
run at two or more LR scales, the seed mean of clean (and, where measured, robust) accuracy at
each scale, the best scale and the spread between the best and the worst scale: a schedule
that is best at one tuned LR but collapses at twice it is a riskier choice than one a little
worse everywhere. Skips itself when no group has two LR scales."""

from __future__ import annotations

from matplotlib.figure import Figure

from robustlr.results.report.document import Document
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
            best = max(means, key=means.get)
            cells = ", ".join(f"x{scale:g}: {means[scale] * 100:.1f}" for scale in means)
            spread = (means[best] - min(means.values())) * 100
            table.append([schedule, regime, label, cells, f"x{best:g}", f"{spread:.1f}"])
    table.sort(key=lambda row: (row[2], float(row[5])))
    document.table(["schedule", "regime / poison / filter", "metric", "mean at each scale",
                    "best scale", "spread (points)"], table)
    _figure(document, curves, metrics)


def _figure(document: Document, curves: dict, metrics: list[tuple[str, str]]) -> None:
    regimes = list(dict.fromkeys(regime for _, regime in curves))
    figure = Figure(figsize=(max(7.0, 4.2 * len(regimes)), 3.4 * len(metrics)))
    grid = figure.subplots(len(metrics), len(regimes), squeeze=False)
    for column, regime in enumerate(regimes):
        for row, (key, label) in enumerate(metrics):
            axes = grid[row][column]
            for (schedule, its_regime), curve in curves.items():
                points = [(scale, p[key]) for scale, p in curve.items() if p[key].n]
                if its_regime != regime or not points:
                    continue
                scales = [s for s, _ in points]
                axes.errorbar(scales, [p.mean * 100 for _, p in points],
                              yerr=[[(p.mean - p.low) * 100 for _, p in points],
                                    [(p.high - p.mean) * 100 for _, p in points]],
                              marker="o", ms=3, capsize=2, lw=1.2, label=schedule)
            axes.set_xscale("log", base=2)
            axes.set_xlabel("LR scale")
            axes.set_ylabel(label)
            axes.set_title(f"regime: {regime}", fontsize=9)
            if axes.has_data():
                axes.legend(fontsize=6)
    document.plot("lr_sensitivity", figure,
                  "Accuracy against the LR scale per schedule (seed means, 95% intervals)")

