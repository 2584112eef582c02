"""The privacy-ledger entries a trial starts from, before its regime trains: what preparing the
data released (its statistics, a poison filter's pass: ``DataBundle.ledger``) and what the
config plans to spend with the trials' results (private selection). The run's preflight checks
a cap on the total against the same entries, so a cap they already spend is a config error."""

from __future__ import annotations

from typing import Any

from robustlr.config import ExperimentConfig
from robustlr.data import DataBundle
from robustlr.privacy.ledger import Entry
from robustlr.regimes.dp_ledger import filter_entry
from robustlr.results.selection import planned_selection_entries
from robustlr.spec import is_none


def planned_entries(config: ExperimentConfig, data: DataBundle, *, filter: str = "none",
                    regime: Any = None) -> tuple[Entry, ...]:
    """The entries known before training for a trial of ``config`` on ``data``, in the order
    they are spent; a private regime composes its own after them and caps the total.

    ``filter``: the poison filter that will run first, for a check before the data is
    filtered (afterwards the poison stage has put the filter's entry, with its counts, in
    ``data.ledger``). ``regime``: the trial's regime spec; a private LR choice the report will
    make among that regime's trials (``report.select_lr: validation`` over several scales) is
    reserved here, so the trial's cap and target cover it and the report does not add it
    again per run.
    """
    entries = tuple(data.ledger)
    if not is_none(filter):
        entries += (filter_entry(filter),)
    if regime is not None:
        entries += planned_selection_entries(config, regime)
    return entries
