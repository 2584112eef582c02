"""Report section for poisoning: attack success rate (ASR) per epoch per schedule (when each
schedule learns the backdoor), clean accuracy against ASR per schedule and filter, the
filters' precision and recall against the known poisons (clean accuracy against ASR per
scenario is the verdict's frontier), and C-ACC / ASR / RA per schedule,
poison and filter beside the unpoisoned baseline. Skips itself when no trial was poisoned."""

from __future__ import annotations

import math
from collections import defaultdict

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from robustlr.results.report.document import Document
from robustlr.results.report.plotting import legend
from robustlr.results.report.sections import percent
from robustlr.results.stats import finite as _number
from robustlr.results.stats import group, interval
from robustlr.spec import is_none

_STYLES = ("-", "--", ":", "-.")


def poisoning_section(document: Document, summaries: list[dict], rows: list[dict]) -> None:
    poisoned = [r for r in summaries if not is_none(r.get("poison"))]
    if not poisoned:
        return
    document.heading("Poisoning")
    document.text(
        "C-ACC: clean test accuracy; ASR: attack success rate, the share of triggered test "
        "inputs outside the target class classified as the target; RA: robust accuracy, the "
        "share of them still given their true class (BackdoorBench's definitions). The "
        "backdoor is learned at the first epoch with ASR >= 50%. Filters are scored against "
        "the known poisoned examples after a brief training with the trial's own schedule. "
        "Mean ± 95% t-interval across seeds.")
    triggered = [r for r in poisoned if _number(r.get("asr")) is not None]
    if triggered:
        _asr_per_epoch(document, triggered, rows)  # clean accuracy vs ASR: in the verdict
    _filter_table(document, poisoned)
    _outcome_table(document, summaries, poisoned)


def _asr_per_epoch(document: Document, triggered: list[dict], rows: list[dict]) -> None:
    by_trial: dict[str, list[dict]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["epoch"]):
        by_trial[row["trial"]].append(row)
    poisons = list(dict.fromkeys(r["poison"] for r in triggered))
    filter_style = {f: _STYLES[i % len(_STYLES)] for i, f in
                    enumerate(dict.fromkeys(r["filter"] for r in triggered))}
    figure = Figure(figsize=(7, 3.4 * len(poisons)))
    for axes, poison in zip(figure.subplots(len(poisons), 1, squeeze=False)[:, 0], poisons):
        records = [r for r in triggered if r["poison"] == poison]
        arms = group(records, ("schedule", "filter", "regime"))
        for (schedule, defence, regime), runs in arms.items():
            curves = [[_number(x.get("asr")) for x in by_trial[r["trial"]]] for r in runs]
            length = min(len(c) for c in curves)
            mean = [_mean([c[i] for c in curves]) for i in range(length)]
            label = f"{schedule} / {defence}" + ("" if regime == "standard" else f" / {regime}")
            axes.plot(range(1, length + 1), [100 * v for v in mean], label=label,
                      color=document.palette(schedule), linestyle=filter_style[defence])
        axes.axhline(50, color="#999999", lw=0.8)
        axes.set_title(f"poison: {poison}", fontsize=9)
        axes.set_xlabel("epoch")
        axes.set_ylabel("ASR %")
        axes.set_ylim(-3, 103)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        legend(axes, ncol=2)
    document.plot("asr_per_epoch", figure,
                  "Attack success rate per epoch (mean over seeds); colour: schedule, line "
                  "style: filter. The backdoor is learned where a curve crosses 50%")


def _mean(values: list[float | None]) -> float:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else math.nan


def _filter_table(document: Document, poisoned: list[dict]) -> None:
    filtered = [r for r in poisoned if not is_none(r.get("filter"))]
    if not filtered:
        return
    table = []
    for (poison, defence), records in group(filtered, ("poison", "filter")).items():
        by_schedule = {s: interval([r.get("filter_recall") for r in runs]).mean
                       for (s,), runs in group(records, ("schedule",)).items()}
        worst = min(by_schedule, key=lambda s: _finite(by_schedule[s]))
        table.append([poison, defence, str(len(records)),
                      interval([r.get("filter_precision") for r in records]).text(digits=2),
                      interval([r.get("filter_recall") for r in records]).text(digits=2),
                      interval([r.get("filter_f1") for r in records]).text(digits=2),
                      percent([r.get("clean_removed") for r in records]),
                      interval([r.get("removed_count") for r in records]).text(digits=0),
                      interval([r.get("poisoned_count") for r in records]).text(digits=0),
                      f"{worst}: {by_schedule[worst]:.2f}" if len(by_schedule) > 1 else "-"])
    document.heading("Poison filters")
    document.text("Precision and recall of the removed set against the poisoned examples, "
                  "pooled over schedules and seeds; clean removed is the share of clean "
                  "training examples thrown away.")
    document.table(["poison", "filter", "trials", "precision", "recall", "F1",
                    "clean removed %", "removed", "poisoned", "lowest-recall schedule"], table)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def _outcome_table(document: Document, summaries: list[dict], poisoned: list[dict]) -> None:
    keys = ("regime", "schedule", "lr_scale")
    arms = {tuple(r.get(k) for k in keys) for r in poisoned}
    baseline = {arm: interval([r.get("clean_acc") for r in runs]).mean
                for arm, runs in group([r for r in summaries if is_none(r.get("poison"))],
                                       keys).items()}
    table = []
    for (regime, schedule, scale, poison, defence), records in group(
            [r for r in summaries if tuple(r.get(k) for k in keys) in arms],
            keys + ("poison", "filter")).items():
        clean = interval([r.get("clean_acc") for r in records]).mean
        reference = baseline.get((regime, schedule, scale), math.nan)
        drop = f"{100 * (reference - clean):.1f}" if math.isfinite(clean - reference) else "-"
        learned = [r.get("backdoor_epoch") for r in records if r.get("backdoor_epoch") is not None]
        measured = any(_number(r.get("asr")) is not None for r in records)
        table.append([schedule, regime, f"{scale:g}", poison, defence, str(len(records)),
                      percent([r.get("clean_acc") for r in records]), drop,
                      percent([r.get("asr") for r in records]),
                      percent([r.get("asr_best") for r in records]),
                      percent([r.get("ra") for r in records]),
                      interval(learned).text(digits=1) if learned else "-",
                      f"{len(learned)}/{len(records)}" if measured else "-"])
    document.heading("Poisoning outcome per schedule")
    document.text("C-ACC drop: points of clean accuracy lost against the unpoisoned run of the "
                  "same schedule (poison none); backdoor epoch: first epoch with ASR >= 50%, "
                  "over the seeds that learned it.")
    document.table(["schedule", "regime", "LR scale", "poison", "filter", "seeds", "C-ACC %",
                    "C-ACC drop", "ASR %", "ASR best %", "RA %", "backdoor epoch",
                    "learned"], table)
