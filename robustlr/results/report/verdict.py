"""The report's opening: per threat model, the verdict a reader can act on ("Under pgd_at:
onecycle and cosine are tied within noise; constant is 4.1 ± 1.2 points less robust"), the
frontier of that threat model alone (small multiples, one colour per schedule) and its ranking.

Differences are paired by seed against the leading schedule, judged over seeds and test
examples together (a paired t-test over seeds and an exact sign test over the fewest test
examples that make the gaps, both must reject; never a gap of one example or less:
``results.stats.paired_over_examples``) and Holm-corrected over the comparisons of the threat
model; with one seed nothing is called a difference."""

from __future__ import annotations

import math

from robustlr.config import SELECTION_EPSILON
from robustlr.results.report.defence_cost import FIRST_SCREEN_ROWS, defence_cost_table, defended
from robustlr.results.report.document import Document
from robustlr.results.report.frontier_figure import frontiers
from robustlr.results.report.plotting import scale
from robustlr.results.report.schedule_notes import never_fired
from robustlr.results.report.selection_cost import attach_costs, cost_clause, cost_table
from robustlr.results.report.threats import (
    NAMES,
    Entry,
    Judged,
    Threat,
    better,
    group_label,
    select_scales,
    selection_text,
    split,
)
from robustlr.results.stats import example_count, group, holm, interval, paired_over_examples

WORSE = {"clean_acc": "less accurate", "robust_acc": "less robust",
         "asr": "more often backdoored (ASR)"}


def judge(threat: Threat, records: list[dict], select_lr: str = "none",
          names: dict[str, str] | None = None, selection_epsilon: float = SELECTION_EPSILON) -> Judged:
    """Rank the schedules of one threat model; ``names`` shortens schedule specs. Under DP
    the entries and the leader carry the ledgers of their chosen models."""
    names = names or {}
    kept, chosen, choices = select_scales(records, threat, select_lr, selection_epsilon)
    entries = []
    for (schedule, lr_scale), runs in group(kept, ("schedule", "lr_scale")).items():
        means = {k: interval([r.get(k) for r in runs]) for k in {threat.x, threat.y, threat.primary}}
        label = group_label(names.get(schedule, schedule), lr_scale,
                            {names.get(k, k): v for k, v in chosen.items()})
        entries.append(Entry(schedule, label, runs, means))
    sign = better(threat.primary)
    entries.sort(key=lambda e: -sign * _value(e.means[threat.primary].mean, sign))
    examples = example_count([r for e in entries for r in e.runs], threat.primary)
    if entries:
        leader = {r.get("seed"): r.get(threat.primary) for r in entries[0].runs}
        for entry in entries[1:]:
            entry.versus = paired_over_examples(
                {r.get("seed"): r.get(threat.primary) for r in entry.runs}, leader, examples)
        adjusted = holm([e.versus.p for e in entries[1:] if e.versus is not None])
        for entry, p in zip(entries[1:], adjusted):
            entry.p_holm = p
    _mark_front(threat, entries)
    judged = Judged(threat, entries, max((len(e.runs) for e in entries), default=0),
                    examples=examples)
    attach_costs(judged, records, choices)
    return judged


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
    privacy = cost_clause(judged)
    if len(entries) == 1:
        return (f"{head}: only {leader.label} ran "
                f"({_amount(metric, leader.means[metric].mean)}).{privacy}")
    if judged.seeds < 2:
        order = ", ".join(f"{e.label} ({_amount(metric, e.means[metric].mean)})" for e in entries[:3])
        return (f"{head} (1 seed: no noise estimate, nothing here is a tested difference): "
                f"{order}{', ...' if len(entries) > 3 else ''}.{privacy}")
    tied = [e for e in entries[1:] if judged.tied(e)]
    worse = [e for e in entries[1:] if not judged.tied(e)]
    over = f" and {judged.examples} test examples" if judged.examples else ""
    text = (f"{head} (paired over {judged.seeds} seeds{over}, Holm-corrected): {leader.label} leads "
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
    return text + "." + privacy


def verdict_section(document: Document, summaries: list[dict], select_lr: str = "none",
                    selection_epsilon: float = SELECTION_EPSILON,
                    rows: list[dict] | None = None) -> list[Judged]:
    threats = split(summaries)
    if not threats:
        document.text("No finished trial: nothing to judge (see 'Trials that did not finish').")
        return []
    judged = [judge(t, records, select_lr, document.palette.names, selection_epsilon)
              for t, records in threats.items()]
    document.heading("Verdict per threat model")
    note = (f" Each schedule is shown at the LR scale with the best {selection_text(threats)} "
            "(select_lr: validation); test numbers never chose it. Under DP that choice is "
            "noisy (report-noisy-max on the private validation split) and its privacy cost is "
            "stated below." if select_lr == "validation" else "")
    document.text("Schedules are compared only within a threat model. Accuracies in percent "
                  "on the test set; robust accuracy is each trial's strongest evaluation "
                  "(robust_acc)." + note)
    document.bullets([sentences(j) for j in judged])
    for note in never_fired(summaries, rows or []):
        document.text(note)
    first = len(defended(document, judged)) <= FIRST_SCREEN_ROWS
    if first:
        defence_cost_table(document, judged)
    frontiers(document, judged)
    if not first:
        defence_cost_table(document, judged)
    cost_table(document, judged)
    return judged
