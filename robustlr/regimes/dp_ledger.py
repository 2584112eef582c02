"""A DP trial's privacy ledger: what was spent on the training data before DP-SGD (its
statistics, a poison filter's pass, a planned private selection), DP-SGD's own entry, and the
summary fields the report and the gate read (``epsilon`` is the total; see
docs/privacy-ledger.md).

A poison filter trains without privacy on every example, and one example can change which
others it removes: no epsilon covers that pass. A DP trial behind a filter is refused unless
the user states ``dp(scope=after_filter)``; the filter's entry is then restated as
``out_of_scope`` and the guarantee, stated for the filtered set only, says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from robustlr.privacy.ledger import Entry, Ledger

FILTER = "filter"
"""The name of a poison filter's entry (``mechanism`` none: an exact pass over private data)."""


def filter_entry(spec: str, *, examples: int | None = None, kept: int | None = None) -> Entry:
    """A poison filter's pass over the training data: no noise, so no finite epsilon."""
    detail: dict[str, Any] = {"filter": spec}
    if examples is not None:
        detail.update(examples=examples, kept=kept)
    return Entry(name=FILTER, mechanism="none", epsilon=math.inf, detail=detail)


def scoped(entries: Sequence[Entry], scope: str) -> Ledger:
    """The entries before DP-SGD, a filter's pass restated as out of scope under
    ``scope=after_filter``; ``ValueError`` (one line) for a filter without that scope."""
    kept = []
    for entry in entries:
        if entry.name == FILTER and entry.mechanism == "none":
            if scope != "after_filter":
                raise ValueError(
                    f"the poison filter {entry.detail.get('filter')!r} trains without privacy "
                    "on every training example, and one example can change which others it "
                    "removes, so no epsilon covers it; remove the filter, or give "
                    "dp(scope=after_filter) to state the guarantee for the filtered set only")
            entry = Entry(name=FILTER, mechanism="out_of_scope", epsilon=0.0,
                          detail={**entry.detail, "scope": "after_filter"})
        kept.append(entry)
    return Ledger(tuple(kept))


def noise_record(history: Sequence[float], base: float, schedule: str | None) -> Any:
    """DP-SGD's noise for a reader: the constant multiplier, or the schedule's summary."""
    if schedule is None or not history:
        return base
    return {"schedule": schedule, "base": base, "min": min(history), "max": max(history)}


def dp_sgd_entry(*, spent: float, delta: float, poisson: bool, detail: dict[str, Any]) -> Entry:
    """DP-SGD's entry: the accountant's bound under Poisson subsampling; fixed shuffled batches
    have no valid accounting here (Chua et al. 2024), so no guarantee at all."""
    if not poisson:
        return Entry(name="dp_sgd", mechanism="shuffled_gaussian", epsilon=math.inf,
                     delta=delta, detail=detail)
    return Entry(name="dp_sgd", mechanism="subsampled_gaussian", epsilon=spent, delta=delta,
                 detail=detail)


def summary_fields(ledger: Ledger, training: Entry) -> dict[str, Any]:
    """``epsilon`` (the total), ``epsilon_training``, ``delta`` (the total), the ledger's
    entries, whether the total is a guarantee, and what data set it covers."""
    after_filter = any(e.mechanism == "out_of_scope" for e in ledger.entries)
    return {"epsilon": ledger.epsilon, "epsilon_training": training.epsilon,
            "delta": ledger.delta, "privacy_ledger": ledger.records(),
            "dp_guarantee": ledger.guaranteed,
            "privacy_scope": "after_filter" if after_filter else "training_data"}
