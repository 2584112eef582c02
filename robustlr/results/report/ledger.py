"""The privacy ledger per DP trial group: each entry that reached the trials (data statistics,
a filter's scope, DP-SGD), its mechanism, epsilon and delta, and the total that the DP panels
and the gate read. Trials without a DP guarantee, and trials whose guarantee covers only the
set a poison filter kept, are named in words under the table (docs/privacy-ledger.md)."""

from __future__ import annotations

import math
from typing import Any

from robustlr.results.report.document import Document
from robustlr.results.stats import finite, group

NO_GUARANTEE = "∞ (no guarantee)"


def ledger_section(document: Document, summaries: list[dict]) -> None:
    """``summaries``: trials with a ``privacy_ledger``, their regime naming the poisoning arm."""
    document.heading("Privacy ledger")
    document.text(
        "A DP trial's epsilon is the total of its ledger: every computation on the private "
        "training data whose result leaves the trial, composed by adding epsilons and deltas "
        "(basic composition; DP-SGD's steps are composed inside its entry by the accountant). "
        "The cap and the target are on this total. Range over the group's trials.")
    rows, unguaranteed, scoped = [], [], []
    for (regime,), runs in group(summaries, ("regime",)).items():
        names = list(dict.fromkeys(e["name"] for r in runs for e in r["privacy_ledger"]))
        label = f"{regime} ({len(runs)} trials)"
        for name in names:
            entries = [e for r in runs for e in r["privacy_ledger"] if e["name"] == name]
            rows.append([label, name, ", ".join(sorted({e["mechanism"] for e in entries})),
                         _range([e.get("epsilon") for e in entries]),
                         _range([e.get("delta") for e in entries])])
            label = ""
        rows.append(["", "total", "basic composition", _range([r.get("epsilon") for r in runs]),
                     _range([r.get("delta") for r in runs])])
        unguaranteed += [regime] if any(r.get("dp_guarantee") is False for r in runs) else []
        scoped += [regime] if any(r.get("privacy_scope") == "after_filter" for r in runs) else []
    document.table(["DP trials", "entry", "mechanism", "ε", "δ"], rows)
    if unguaranteed:
        document.text("No DP guarantee: " + "; ".join(unguaranteed) + ". An entry without a "
                      "finite epsilon (fixed shuffled batches, poisson=false, which the Poisson "
                      "analysis does not cover; no noise; an exact statistic of the data) makes "
                      "the total infinite; these trials are placed at no epsilon level.")
    if scoped:
        document.text("Epsilon covers the filtered set only: " + "; ".join(scoped) + ". The "
                      "poison filter saw every training example without noise "
                      "(dp(scope=after_filter)); the guarantee is for the examples it kept.")


def _range(values: list[Any]) -> str:
    """The values' range; an infinite (stored null) epsilon is no guarantee."""
    if any(value is None or value == math.inf for value in values):
        return NO_GUARANTEE
    numbers = [number for number in (finite(v) for v in values) if number is not None]
    if not numbers:
        return "-"
    low, high = min(numbers), max(numbers)
    return f"{low:.3g}" if f"{low:.3g}" == f"{high:.3g}" else f"{low:.3g}–{high:.3g}"
