"""Report section for differential privacy: accuracy against epsilon per schedule with the
frontier, epsilon spent per epoch, schedules ranked at equal epsilon, trials stopped by the hard
budget, and the membership-inference audit beside the accountant's epsilon. Skips itself when
no trial is private and none was audited."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from robustlr.records import requested_epsilon
from robustlr.results.report.document import Document
from robustlr.results.report.equal_epsilon import equal_epsilon_ranking
from robustlr.results.report.ledger import ledger_section
from robustlr.results.report.plotting import bounded, legend, set_limits
from robustlr.results.report.robustness import _mean_curve, _pareto
from robustlr.results.report.sections import percent
from robustlr.results.stats import finite as _number
from robustlr.results.stats import group, interval, with_arms


def privacy_section(document: Document, summaries: list[dict], rows: list[dict]) -> None:
    summaries = with_arms(summaries)  # a poisoned arm is never pooled with clean training
    # a trial without a finite epsilon (no DP guarantee) is in the ledger table, never at a level
    private = [r for r in summaries if _number(r.get("epsilon")) is not None]
    ledgered = [r for r in summaries if r.get("privacy_ledger")]
    audited = [r for r in summaries if _number(r.get("mia_auc")) is not None]
    if not private and not audited and not ledgered:
        return
    document.heading("Differential privacy")
    document.text(
        "A DP trial's epsilon is the total of its privacy ledger (DP-SGD's accountant bound "
        "plus the other entries, see below; delta as given, or 0.1 / N, likewise a total); "
        "trials are grouped by their epsilon level (the DP regime's target, else its hard cap, "
        "both on the total). Under DP the number of steps is budget, so the schedule decides "
        "how much accuracy an epsilon buys. Mean ± 95% t-interval across seeds. Every "
        "epsilon here is one trial's; a model chosen among trials costs more (the verdict's "
        "privacy table: the runs the choice read, composed, plus the choice).")
    if private:
        _accuracy_vs_epsilon(document, private, summaries)
        _epsilon_per_epoch(document, private, rows)
        equal_epsilon_ranking(document, _levels(private))
        _exhausted(document, private)
        _canary_audit(document, private)
    if ledgered:
        ledger_section(document, ledgered)
    if audited:
        _membership(document, audited)


_level = requested_epsilon


def _levels(private: list[dict]) -> dict[str, list[dict]]:
    """Trials by epsilon level, lowest first; a fixed-noise regime without a cap is its own."""
    levels: dict[tuple, list[dict]] = defaultdict(list)
    for record in private:
        level = _level(record)
        key = (0, level, "") if level is not None else (1, math.inf, record["regime"])
        levels[key].append(record)
    named = {}
    for key in sorted(levels):
        spent = interval([r.get("epsilon") for r in levels[key]]).mean
        name = f"ε = {key[1]:g}" if key[0] == 0 else f"{key[2]} (ε spent {spent:.2f})"
        named[name] = levels[key]
    return named


def _accuracy_vs_epsilon(document: Document, private: list[dict], summaries: list[dict]) -> None:
    figure = Figure(figsize=(7, 4.4))
    axes = figure.subplots()
    points, labels, shown = [], [], []
    for (schedule, scale), records in group(private, ("schedule", "lr_scale")).items():
        line = []
        for records_at in _levels(records).values():
            eps = interval([r.get("epsilon") for r in records_at]).mean
            acc = interval([r.get("clean_acc") for r in records_at])
            if math.isfinite(eps) and math.isfinite(acc.mean):
                line.append((eps, acc))
        if not line:
            continue
        line.sort(key=lambda p: p[0])
        label = schedule + (f" x{scale:g}" if scale != 1.0 else "")
        axes.errorbar([p[0] for p in line], [100 * p[1].mean for p in line],
                      yerr=[[100 * p[1].mean - bounded("clean_acc", 100 * p[1].low) for p in line],
                            [bounded("clean_acc", 100 * p[1].high) - 100 * p[1].mean
                             for p in line]],
                      marker="o", ms=4, capsize=2, lw=1, label=label,
                      color=document.palette(schedule))
        shown += [100 * p[1].low for p in line] + [100 * p[1].high for p in line]
        points += [(-eps, 100 * acc.mean) for eps, acc in line]
        labels += [label] * len(line)
    front = sorted((-x, y) for (x, y), best in zip(points, _pareto(points)) if best)
    if front:
        axes.plot([p[0] for p in front], [p[1] for p in front], color="#333333", lw=2,
                  alpha=0.35, zorder=1)
        axes.scatter([p[0] for p in front], [p[1] for p in front], marker="*", s=160,
                     color="#333333", label="frontier", zorder=3)
    reference = _non_private_best(summaries)
    if reference is not None:
        axes.axhline(100 * reference[1], color="#555", ls="--", lw=1,
                     label=f"non-private best ({reference[0]})")
        shown.append(100 * reference[1])
    set_limits(axes, "y", "clean_acc", shown)
    axes.set_xlim(left=0)
    axes.set_xlabel("epsilon spent per trial")
    axes.set_ylabel("clean test accuracy %")
    legend(axes, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    document.heading("Accuracy against epsilon")
    document.plot("privacy_accuracy_vs_epsilon", figure,
                  "Final clean accuracy against the epsilon spent, per schedule (mean and 95% "
                  "interval over seeds); stars: no other schedule is more accurate at an equal "
                  "or smaller epsilon")


def _non_private_best(summaries: list[dict]) -> tuple[str, float] | None:
    standard = [r for r in summaries if r.get("regime") == "standard" and r.get("status") == "ok"]
    means = [(schedule, interval([r.get("clean_acc") for r in records]).mean)
             for (schedule,), records in group(standard, ("schedule",)).items()]
    means = [m for m in means if math.isfinite(m[1])]
    return max(means, key=lambda m: m[1]) if means else None


def _epsilon_per_epoch(document: Document, private: list[dict], rows: list[dict]) -> None:
    by_trial: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_trial[row["trial"]].append(row)
    levels = _levels(private)
    figure = Figure(figsize=(max(7.0, 3.8 * len(levels)), 3.8))
    axes_list = figure.subplots(1, len(levels), squeeze=False)[0]
    for axes, (name, records) in zip(axes_list, levels.items()):
        several = len({r["regime"] for r in records}) > 1
        for (schedule, regime), runs in group(records, ("schedule", "regime")).items():
            curves = [[_number(x.get("epsilon")) for x in sorted(by_trial[r["trial"]],
                                                                 key=lambda x: x["epoch"])]
                      for r in runs]
            curve = _mean_curve(curves)
            if curve:
                axes.plot(range(1, len(curve) + 1), curve, marker=".",
                          color=document.palette(schedule),
                          label=f"{schedule} / {regime}" if several else schedule)
        level = _level(records[0])
        if level is not None:
            axes.axhline(level, color="#333333", ls=":", lw=1, label="target / cap")
        axes.set_title(name, fontsize=9)
        axes.set_xlabel("epoch")
        axes.set_ylabel("epsilon spent")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylim(bottom=0)
        legend(axes)
    document.heading("Privacy budget per epoch")
    document.plot("privacy_epsilon_per_epoch", figure,
                  "Epsilon spent at the end of each epoch (mean over seeds); the hard cap is "
                  "never crossed: a trial whose next step would cross it stops")


def _exhausted(document: Document, private: list[dict]) -> None:
    stopped = [r for r in private
               if r.get("status") == "budget_exhausted" or r.get("budget_exhausted") is True]
    if not stopped:
        document.text("No trial reached its hard epsilon cap: every private trial took all "
                      "its planned steps.")
        return
    document.heading("Trials stopped by the privacy budget")
    document.text("The next optimizer step would have taken epsilon past the cap, so training "
                  "stopped there; the model is the one of the last completed epoch.")
    document.table(["trial", "schedule", "regime", "seed", "epochs reached", "steps / planned",
                    "ε spent", "cap", "clean acc %"],
                   [[r["trial"], r["schedule"], r["regime"], str(r.get("seed", "")),
                     str(r.get("epochs", "")),
                     f"{r.get('steps', '')} / {r.get('planned_steps', '?')}",
                     _text(r.get("epsilon"), 2), _text(r.get("max_epsilon"), 2),
                     percent([r.get("clean_acc")])] for r in stopped])


def _text(value: Any, digits: int) -> str:
    number = _number(value)
    return "-" if number is None else f"{number:.{digits}f}"


def _canary_audit(document: Document, private: list[dict]) -> None:
    """The one-run canary audit (``evaluation.privacy_audit``) beside each trial's epsilon."""
    audited = [r for r in private if _number(r.get("audit_epsilon_lower")) is not None]
    if not audited:
        return
    document.heading("Canary audit in one run")
    document.text(
        "Steinke, Nasr & Jagielski 2023: training examples relabelled at random, each trained on "
        "with probability 1/2, are guessed in or out from their loss on the final model. The "
        "lower bound holds at the stated confidence: a trial whose lower bound exceeds its "
        "epsilon cannot have the guarantee it reports (flagged). A bound under the epsilon "
        "proves nothing either way: the audit only sees what this attack can detect.")
    table = [[r["trial"], r["schedule"], r["regime"], str(r.get("seed", "")),
              _text(r.get("epsilon"), 2), _text(r.get("audit_epsilon_lower"), 2),
              f"{r.get('audit_correct', '?')} / {r.get('audit_guesses', '?')} "
              f"of {r.get('audit_canaries', '?')}",
              "FLAGGED" if r.get("audit_flagged") else "no"] for r in audited]
    document.table(["trial", "schedule", "regime", "seed", "ε (accountant)",
                    "ε lower bound (canaries)", "correct / guesses of canaries", "flagged"],
                   table)
    flagged = [r["trial"] for r in audited if r.get("audit_flagged")]
    if flagged:
        document.text("Warning: the canary audit proves more privacy loss than the reported "
                      "epsilon in " + ", ".join(flagged) + ".")


def _membership(document: Document, audited: list[dict]) -> None:
    document.heading("Membership-inference audit")
    document.text(
        "Loss-threshold attack (Yeom et al. 2018) on training examples against as many held-out "
        "test examples, and ART's black-box attack (trained on one half, scored on the other). "
        "AUC 0.5 is chance. The empirical epsilon lower bound (95% confidence, threshold chosen "
        "on one half and counted on the other) must stay below the accountant's epsilon; "
        "a private trial where it does not points at a broken guarantee.")
    table, broken = [], []
    groups = group(audited, ("regime", "schedule", "lr_scale"))
    for (regime, schedule, scale), runs in groups.items():
        spent = interval([r.get("epsilon") for r in runs])
        private = spent.n > 0
        table.append([regime, schedule, f"{scale:g}", str(len(runs)),
                      spent.text(digits=2) if private else "∞ (not private)",
                      interval([r.get("mia_auc") for r in runs]).text(digits=3),
                      percent([r.get("mia_tpr_at_1pct_fpr") for r in runs]),
                      interval([r.get("epsilon_lower_bound") for r in runs]).text(digits=2),
                      interval([r.get("mia_art_auc") for r in runs]).text(digits=3)])
        broken += [r for r in runs if private and _number(r.get("epsilon_lower_bound")) is not None
                   and _number(r.get("epsilon")) is not None
                   and r["epsilon_lower_bound"] > r["epsilon"]]
    document.table(["regime", "schedule", "LR scale", "seeds", "ε (accountant)", "MIA AUC",
                    "TPR at 1% FPR %", "ε lower bound (audit)", "ART MIA AUC"], table)
    if broken:
        document.text("Warning: the audit's lower bound exceeds the accountant's epsilon in "
                      + ", ".join(r["trial"] for r in broken) + ".")
