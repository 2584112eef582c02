"""The table of schedules ranked at equal epsilon, which restates the verdict's judgement
instead of making its own. It used to rank every (schedule, LR scale) by mean and call a row
"overlaps best" when the two 95% seed intervals overlapped: an unpaired, conservative rule
over a different set of rows (LR scales the verdict did not choose, with their own "best"), so
the verdict said "reliably behind" (a paired test at the chosen scale) while this table said
"overlaps best" for the same schedule. Now the rows the verdict judged come first, in its
order, with its word; LR scales it did not choose are listed after, marked so."""

from __future__ import annotations

import math

from robustlr.results.report.document import Document
from robustlr.results.report.sections import percent
from robustlr.results.report.threats import Entry, Judged
from robustlr.results.stats import group, interval


def verdict_word(judged: Judged, entry: Entry) -> str:
    """What the verdict says of ``entry``: the leader, tied with it, or behind it."""
    if entry is judged.entries[0]:
        return "leader"
    if judged.seeds < 2:
        return "not tested (1 seed)"
    p = f", p={entry.p_holm:.3f}" if math.isfinite(entry.p_holm) else ""
    return ("tied with the leader" if judged.tied(entry) else "behind the leader") + p


def _judged_by_trial(verdicts: list[Judged]) -> dict[str, tuple[Judged, int, Entry]]:
    found = {}
    for judged in verdicts:
        if judged.threat.kind == "dp":
            for rank, entry in enumerate(judged.entries, 1):
                found.update({str(r.get("trial")): (judged, rank, entry) for r in entry.runs})
    return found


def equal_epsilon_ranking(document: Document, levels: dict[str, list[dict]]) -> None:
    """``levels``: the private trials by epsilon level (name -> records), lowest first."""
    judged_by_trial = _judged_by_trial(document.verdicts)
    table = []
    for name, records in levels.items():
        judged_rows, other_rows = [], []
        for (schedule, regime, scale), runs in group(records, ("schedule", "regime", "lr_scale")).items():
            found = next((judged_by_trial[str(r.get("trial"))] for r in runs
                          if str(r.get("trial")) in judged_by_trial), None)
            cells = [schedule, regime, f"{scale:g}", str(len(runs)),
                     interval([r.get("epsilon") for r in runs]).text(digits=2),
                     percent([r.get("clean_acc") for r in runs]),
                     percent([r.get("clean_acc_best") for r in runs])]
            status = ", ".join(sorted({str(r.get("status", "?")) for r in runs}))
            if found is None:
                other_rows.append([name, "-", *cells, "LR scale not chosen (validation)", status])
            else:
                judged, rank, entry = found
                judged_rows.append((rank, [name, str(rank), *cells, verdict_word(judged, entry),
                                           status]))
        table += [row for _, row in sorted(judged_rows, key=lambda item: item[0])] + other_rows
    document.heading("Schedules ranked at equal epsilon")
    document.text("Ranked as the verdict ranks them (each schedule at its chosen LR scale, "
                  "differences paired by seed and Holm-corrected); the other LR scales follow.")
    document.table(["epsilon level", "rank", "schedule", "regime", "LR scale", "seeds",
                    "ε spent", "clean acc %", "best-epoch acc %", "verdict", "status"], table,
                   name="equal_epsilon")
