"""Report section for adversarial robustness: robust accuracy per epoch above the LR that
produced it (robust overfitting shows as a peak right after a decay, Rice et al. 2020), the
clean-vs-robust frontier across schedules, the robust-gap table with seed intervals, and the
sanity warnings of each trial. Skips itself when no trial measured robust accuracy."""

from __future__ import annotations

import math
from collections import defaultdict

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from robustlr.results.report.document import Document
from robustlr.results.report.sections import percent
from robustlr.results.stats import finite as _number
from robustlr.results.stats import group, interval, with_arms


def robustness_section(document: Document, summaries: list[dict], rows: list[dict]) -> None:
    measured = [r for r in with_arms(summaries) if _number(r.get("robust_acc")) is not None]
    if not measured:
        return
    document.heading("Adversarial robustness")
    attacks = sorted({str(r["attack"]) for r in measured if r.get("attack")})
    document.text(
        f"Robust accuracy under {', '.join(attacks) or 'the per-epoch attack'} on a fixed "
        "subset of the test set, every epoch. 'best' is the robust accuracy of the epoch with the "
        "best validation robust accuracy; the robust gap is best minus final (robust "
        "overfitting when large). Catastrophic overfitting: PGD accuracy collapsed while FGSM "
        "accuracy stayed high. Mean ± 95% t-interval across seeds.")
    _trajectories(document, measured, rows)
    _frontier(document, measured)
    _gap_table(document, measured)
    _warnings(document, measured)


def _mean_curve(curves: list[list[float | None]]) -> list[float]:
    """Per-epoch mean over seeds, up to the shortest curve; NaN where no seed has a value."""
    length = min((len(c) for c in curves), default=0)
    means = []
    for i in range(length):
        values = [c[i] for c in curves if c[i] is not None]
        means.append(sum(values) / len(values) if values else math.nan)
    return means


def _trajectories(document: Document, summaries: list[dict], rows: list[dict]) -> None:
    by_trial: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_trial[row["trial"]].append(row)
    for trial_rows in by_trial.values():
        trial_rows.sort(key=lambda r: r["epoch"])
    regimes = list(dict.fromkeys(r["regime"] for r in summaries))
    figure = Figure(figsize=(max(7.0, 4.2 * len(regimes)), 5.4))
    axes = figure.subplots(2, len(regimes), squeeze=False, sharex="col",
                           gridspec_kw={"height_ratios": [3, 1.2]})
    for column, regime in enumerate(regimes):
        top, bottom = axes[0, column], axes[1, column]
        records = [r for r in summaries if r["regime"] == regime]
        scales = sorted({r["lr_scale"] for r in records})
        scale = 1.0 if 1.0 in scales else scales[0]
        for (schedule,), runs in group([r for r in records if r["lr_scale"] == scale],
                                       ("schedule",)).items():
            trial_rows = [by_trial[r["trial"]] for r in runs]
            robust = _mean_curve([[_number(x.get("robust_acc")) for x in t] for t in trial_rows])
            lr = _mean_curve([[_number(x.get("lr")) for x in t] for t in trial_rows])
            if not robust:
                continue
            epochs = range(1, len(robust) + 1)
            line, = top.plot(epochs, [100 * v for v in robust], label=schedule)
            bottom.plot(epochs, lr, color=line.get_color())
        top.set_title(f"regime: {regime}" + (f" (LR scale {scale:g})" if scale != 1.0 else ""),
                      fontsize=9)
        top.set_ylabel("robust accuracy %")
        bottom.set_ylabel("LR")
        bottom.set_xlabel("epoch")
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        if top.get_legend_handles_labels()[0]:
            top.legend(fontsize=7)
    document.plot("robust_accuracy_per_epoch", figure,
                  "Robust test accuracy per epoch (mean over seeds) above the LR at the end of "
                  "each epoch: a peak right after an LR decay followed by a decline is robust "
                  "overfitting")


def _pareto(points: list[tuple[float, float]]) -> list[bool]:
    """True where no other point is at least as good on both axes and better on one."""
    return [not any(a >= x and b >= y and (a > x or b > y) for a, b in points)
            for x, y in points]


def _frontier(document: Document, summaries: list[dict]) -> None:
    cascade = all(_number(r.get("cascade_robust_acc")) is not None for r in summaries)
    key = "cascade_robust_acc" if cascade else "robust_acc"
    labels, points = [], []
    groups = group(summaries, ("regime", "schedule", "lr_scale"))
    for (regime, schedule, scale), records in groups.items():
        clean = interval([r.get("clean_acc") for r in records]).mean
        robust = interval([r.get(key) for r in records]).mean
        if math.isfinite(clean) and math.isfinite(robust):
            labels.append(f"{schedule} / {regime}" + (f" x{scale:g}" if scale != 1.0 else ""))
            points.append((100 * clean, 100 * robust))
    if not points:
        return
    best = _pareto(points)
    figure = Figure(figsize=(7, 4.6))
    axes = figure.subplots()
    for on_front, marker, colour, name in ((False, "o", "#9a9a9a", "dominated"),
                                           (True, "*", "#d62728", "Pareto front")):
        chosen = [p for p, b in zip(points, best) if b == on_front]
        if chosen:
            axes.scatter([p[0] for p in chosen], [p[1] for p in chosen], marker=marker,
                         s=140 if on_front else 40, color=colour, label=name, zorder=3)
    front = sorted(p for p, b in zip(points, best) if b)
    axes.plot([p[0] for p in front], [p[1] for p in front], color="#d62728", lw=1, zorder=2)
    for (x, y), label in zip(points, labels):
        axes.annotate(label, (x, y), fontsize=6, xytext=(4, 3), textcoords="offset points")
    axes.set_xlabel("clean test accuracy %")
    axes.set_ylabel("robust test accuracy %")
    axes.legend(fontsize=7)
    what = "the final attack cascade" if cascade else "the per-epoch attack"
    document.plot("robust_frontier", figure,
                  f"Clean vs robust accuracy of the final models ({what}), mean over seeds; "
                  "stars are Pareto-optimal: no other schedule is better on both")


def _gap_table(document: Document, summaries: list[dict]) -> None:
    optional = [(key, title) for key, title in (("cascade_robust_acc", "cascade robust %"),
                                                ("corruption_acc", "corruption acc %"))
                if any(_number(r.get(key)) is not None for r in summaries)]
    groups = group(summaries, ("regime", "schedule", "lr_scale"))
    ranked = sorted(groups.items(), key=lambda item: -_finite(
        interval([r.get("robust_acc") for r in item[1]]).mean))
    table = []
    for (regime, schedule, scale), records in ranked:
        overfit = sum(1 for r in records if r.get("catastrophic_overfitting") is True)
        table.append([schedule, regime, f"{scale:g}", str(len(records)),
                      percent([r.get("clean_acc") for r in records]),
                      percent([r.get("robust_acc") for r in records]),
                      percent([r.get("robust_acc_best") for r in records]),
                      interval([r.get("best_robust_epoch") for r in records]).text(digits=0),
                      percent([r.get("robust_gap") for r in records]),
                      f"{overfit}/{len(records)}"]
                     + [percent([r.get(key) for r in records]) for key, _ in optional])
    document.heading("Robust overfitting per schedule")
    document.table(["schedule", "regime", "LR scale", "seeds", "clean %", "robust %",
                    "robust best %", "best robust epoch", "robust gap (points)",
                    "catastrophic overfitting"] + [title for _, title in optional], table)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def _warnings(document: Document, summaries: list[dict]) -> None:
    table = [[r["trial"], r["schedule"], r["regime"], str(r.get("seed", "")), str(message)]
             for r in summaries for message in (r.get("warnings") or [])]
    if table:
        document.heading("Evaluation sanity warnings")
        document.text("Checks for evaluations that may be invalid (gradient masking, attacks "
                      "that did not converge); a trial listed here may overstate its robustness.")
        document.table(["trial", "schedule", "regime", "seed", "warning"], table)
