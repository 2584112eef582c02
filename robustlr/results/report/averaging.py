"""Report section for weight averaging (the ``averaging`` grid dimension): how EMA or SWA
changes each schedule's robust overfitting. Per regime and averaging, the per-epoch monitor
robust accuracy of the raw weights (dashed) and of the averaged weights (solid), per schedule,
mean over seeds; and a table of the final numbers and of the overfitting gap (best epoch minus
final) for both. Without a per-epoch attack it shows clean test accuracy instead. Skips itself
when no trial averaged its weights."""

from __future__ import annotations

from matplotlib.figure import Figure

from robustlr.results.report.document import Document
from robustlr.results.report.sections import percent
from robustlr.results.stats import finite, group


def _mean_curve(rows: list[dict], trials: set[str], key: str) -> list[float]:
    by_epoch: dict[int, list[float]] = {}
    for row in rows:
        value = finite(row.get(key))
        if row.get("trial") in trials and value is not None:
            by_epoch.setdefault(row["epoch"], []).append(value)
    return [sum(v) / len(v) if v else float("nan") for _, v in sorted(by_epoch.items())]


def _gap(rows: list[dict], trial: str, key: str) -> float | None:
    found = [finite(r.get(key)) for r in rows if r.get("trial") == trial]
    values = [v for v in found if v is not None]
    return max(values) - values[-1] if values else None


def averaging_section(document: Document, summaries: list[dict], rows: list[dict]) -> None:
    averaged = [r for r in summaries if (r.get("averaging") or "none") != "none"]
    if not averaged:
        return
    robust = any(finite(r.get("avg_monitor_robust_acc")) is not None for r in averaged)
    raw_key, avg_key = (("monitor_robust_acc", "avg_monitor_robust_acc") if robust
                        else ("test_acc", "avg_test_acc"))
    what = "monitor robust accuracy" if robust else "clean test accuracy"
    document.heading("Weight averaging and robust overfitting")
    document.text(
        f"Per-epoch {what} of the raw weights (dashed) and of their average (solid: EMA "
        "updated every step, or SWA over the end-of-epoch weights with BatchNorm statistics "
        "recomputed), mean over seeds. Robust overfitting shows as a raw curve that falls after "
        "its peak; averaging is its known remedy (Rice et al. 2020; Chen et al. 2021). The gap "
        "is the best epoch's value minus the final one.")
    groups = group(averaged, ("regime", "averaging"))
    figure = Figure(figsize=(max(6.0, 4.2 * len(groups)), 3.8))
    axes = figure.subplots(1, len(groups), squeeze=False)[0]
    table = []
    for ax, ((regime, averaging), records) in zip(axes, groups.items()):
        for (schedule,), runs in group(records, ("schedule",)).items():
            trials = {r["trial"] for r in runs}
            color = document.palette(str(schedule))
            for key, style in ((raw_key, "--"), (avg_key, "-")):
                curve = _mean_curve(rows, trials, key)
                ax.plot(range(1, len(curve) + 1), [100 * v for v in curve], style, color=color,
                        label=str(schedule) if style == "-" else None)
            table.append([str(schedule), str(regime), str(averaging), str(len(runs)),
                          percent([r.get("monitor_robust_acc" if robust else "clean_acc") for r in runs]),
                          percent([r.get("avg_monitor_robust_acc" if robust else "avg_clean_acc")
                                   for r in runs]),
                          percent([_gap(rows, r["trial"], raw_key) for r in runs]),
                          percent([_gap(rows, r["trial"], avg_key) for r in runs])])
        ax.set_title(f"{regime}\n{averaging}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{what} (%)")
        ax.legend(fontsize=7)
    figure.tight_layout()
    document.plot("averaging", figure, f"{what}: raw (dashed) and averaged (solid) weights")
    document.table(["schedule", "regime", "averaging", "trials", "final raw", "final averaged",
                    "raw gap", "averaged gap"], table)
