"""Report section for adversarial robustness: the monitor's robust accuracy per epoch per
threat model (robust overfitting shows as a peak right after a decay, Rice et al. 2020), the
robust-gap table with seed intervals (headline robust_acc beside the monitor), and the sanity
warnings of each trial. The clean-vs-robust frontier is in the verdict, per threat model.
Skips itself when no trial measured robust accuracy."""

from __future__ import annotations

import math

from robustlr.results.report.document import Document
from robustlr.results.report.sections import per_threat_curves, percent
from robustlr.results.stats import finite as _number
from robustlr.results.stats import group, interval, with_arms


def robustness_section(document: Document, summaries: list[dict], rows: list[dict]) -> None:
    measured = [r for r in with_arms(summaries) if _number(r.get("robust_acc")) is not None]
    if not measured:
        return
    document.heading("Adversarial robustness")
    monitors = sorted({f"{r['monitor_attack']} on {r.get('monitor_examples', '?')} test examples"
                       for r in measured if r.get("monitor_attack")})
    headline = sorted({f"{r.get('robust_eval')} on {r.get('robust_examples', '?')} test examples"
                       for r in measured if r.get("robust_eval")})
    document.text(
        f"Robust accuracy (robust_acc, the headline everywhere): {'; '.join(headline) or '-'}. "
        f"The per-epoch monitor ({'; '.join(monitors) or '-'}) is a cheaper attack on a subset: "
        "it tracks the trajectory and picks the best-robust epoch, and is never compared with "
        "the headline. The robust gap is best-robust-epoch minus final (robust overfitting "
        "when large). Catastrophic overfitting: the monitor's PGD accuracy collapsed while "
        "FGSM accuracy stayed high. Mean ± 95% t-interval across seeds.")
    _trajectories(document, measured, rows, monitors)
    _gap_table(document, measured)
    _warnings(document, measured)


def _mean_curve(curves: list[list[float | None]]) -> list[float]:
    """Per-epoch mean over seeds, up to the shortest curve; NaN where no seed has a value."""
    length = min((len(c) for c in curves), default=0)
    means = []
    for i in range(length):
        values = [v for c in curves if (v := c[i]) is not None]
        means.append(sum(values) / len(values) if values else math.nan)
    return means


def _trajectories(document: Document, summaries: list[dict], rows: list[dict],
                  monitors: list[str]) -> None:
    figure, note = per_threat_curves(document, summaries, rows, "monitor_robust_acc",
                                     "monitor robust accuracy %")
    if note:
        document.text(note)
    if figure is not None:
        document.plot("monitor_robust_accuracy_per_epoch", figure,
                      f"Monitor ({'; '.join(monitors)}) robust accuracy per epoch, mean over "
                      "seeds: a peak right after an LR decay followed by a decline is robust "
                      "overfitting. A monitor, not the headline robust_acc")


def _pareto(points: list[tuple[float, float]]) -> list[bool]:
    """True where no other point is at least as good on both axes and better on one."""
    return [not any(a >= x and b >= y and (a > x or b > y) for a, b in points)
            for x, y in points]


def _gap_table(document: Document, summaries: list[dict]) -> None:
    optional = [(key, title) for key, title in (("corruption_acc", "corruption acc %"),)
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
                      percent([r.get("robust_gap") for r in records]),
                      percent([r.get("monitor_robust_acc") for r in records]),
                      interval([r.get("best_robust_epoch") for r in records]).text(digits=0),
                      f"{overfit}/{len(records)}"]
                     + [percent([r.get(key) for r in records]) for key, _ in optional])
    document.heading("Robust overfitting per schedule")
    document.table(["schedule", "regime", "LR scale", "seeds", "clean %", "robust %",
                    "robust at best epoch %", "robust gap (points)", "monitor final %",
                    "best robust epoch", "catastrophic overfitting"]
                   + [title for _, title in optional], table)


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
