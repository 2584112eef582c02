"""Report sections for clean training: the schedule table, LR curves, accuracy per epoch and
cost (sensitivity to the LR scale is its own section, report/sensitivity.py)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from matplotlib.figure import Figure

from robustlr import schedules
from robustlr.results.report.document import Document
from robustlr.results.stats import group, interval, with_arms


def percent(values: list[Any]) -> str:
    return interval(values).text(scale=100.0)


def clean_sections(document: Document, summaries: list[dict], rows: list[dict]) -> None:
    counts: dict[str, int] = defaultdict(int)
    for record in summaries:
        counts[record.get("status", "?")] += 1
    document.text(f"{len(summaries)} trials: " +
                  ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) +
                  ". Accuracies are test-set percentages, mean ± 95% t-interval across seeds; "
                  "'best' is the test accuracy of the epoch with the best validation accuracy.")
    _schedule_table(document, summaries)
    _failures(document, summaries)
    summaries = with_arms(summaries)
    _lr_curves(document, summaries)
    _accuracy_per_epoch(document, summaries, rows)
    _cost(document, summaries)


def _schedule_table(document: Document, summaries: list[dict]) -> None:
    document.heading("Schedules")
    groups = group(summaries, ("regime", "schedule", "lr_scale", "poison", "filter"))
    ranked = sorted(groups.items(), key=lambda item: -_mean(item[1], "clean_acc"))
    table = []
    for rank, ((regime, schedule, scale, poison, defence), records) in enumerate(ranked, 1):
        scenario = "" if poison in (None, "none") and defence in (None, "none") else f" / {poison} / {defence}"
        table.append([str(rank), schedule, regime + scenario, f"{scale:g}", str(len(records)),
                      percent([r.get("clean_acc") for r in records]),
                      percent([r.get("clean_acc_best") for r in records]),
                      interval([r.get("train_seconds") for r in records]).text(digits=2),
                      ", ".join(sorted({r.get("status", "?") for r in records}))])
    document.table(["rank", "schedule", "regime / poison / filter", "LR scale", "seeds", "clean acc %",
                    "best-epoch acc %", "train s", "status"], table)


def _mean(records: list[dict], key: str) -> float:
    value = interval([r.get(key) for r in records]).mean
    return value if math.isfinite(value) else -math.inf


def _failures(document: Document, summaries: list[dict]) -> None:
    failed = [r for r in summaries if r.get("status") in ("failed", "diverged")]
    if failed:
        document.heading("Trials that did not finish")
        document.table(["trial", "schedule", "regime", "LR scale", "seed", "status", "error"],
                       [[r["trial"], r["schedule"], r["regime"], f"{r['lr_scale']:g}",
                         str(r["seed"]), r["status"], r.get("error") or ""] for r in failed])


def _lr_curves(document: Document, summaries: list[dict]) -> None:
    specs = list(dict.fromkeys(r["schedule"] for r in summaries))
    figure = Figure(figsize=(7, 3.6))
    axes = figure.subplots()
    for spec in specs:
        values = schedules.values(schedules.parse(spec), 400)
        axes.plot([i / 400 for i in range(400)], values, label=spec)
    axes.set_xlabel("training progress (optimizer steps / planned steps)")
    axes.set_ylabel("LR multiplier")
    axes.legend(fontsize=7, loc="best")
    document.heading("Learning-rate schedules")
    document.plot("lr_curves", figure, "LR multiplier applied at every optimizer step "
                  "(metric-driven plateau shown without its reductions)")


def _accuracy_per_epoch(document: Document, summaries: list[dict], rows: list[dict]) -> None:
    by_trial = defaultdict(list)
    for row in rows:
        by_trial[row["trial"]].append(row)
    regimes = list(dict.fromkeys(r["regime"] for r in summaries))
    figure = Figure(figsize=(7, 3.4 * len(regimes)))
    axes_list = figure.subplots(len(regimes), 1, squeeze=False)[:, 0]
    for axes, regime in zip(axes_list, regimes):
        for (schedule,), records in group([r for r in summaries if r["regime"] == regime
                                           and r["lr_scale"] == 1.0], ("schedule",)).items():
            curves = [[row["test_acc"] for row in by_trial[r["trial"]]] for r in records]
            length = min((len(c) for c in curves), default=0)
            if length:
                mean = [sum(c[i] for c in curves) / len(curves) for i in range(length)]
                axes.plot(range(1, length + 1), [m * 100 for m in mean], label=schedule)
        axes.set_title(f"regime: {regime}", fontsize=9)
        axes.set_xlabel("epoch")
        axes.set_ylabel("test accuracy %")
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7)
    document.heading("Accuracy per epoch")
    document.plot("accuracy_per_epoch", figure, "Test accuracy per epoch (LR scale 1, mean over seeds)")


def _cost(document: Document, summaries: list[dict]) -> None:
    groups = group(summaries, ("schedule", "regime"))
    labels = [f"{s} / {r}" for s, r in groups]
    seconds = [interval([x.get("train_seconds") for x in records]).mean for records in groups.values()]
    figure = Figure(figsize=(7, 0.35 * len(labels) + 1.2))
    axes = figure.subplots()
    axes.barh(labels, [0 if math.isnan(s) else s for s in seconds])
    axes.invert_yaxis()
    axes.tick_params(axis="y", labelsize=7)
    axes.set_xlabel("training seconds per trial (mean over seeds and LR scales)")
    document.heading("Cost")
    document.plot("cost", figure, "Training time per trial")
