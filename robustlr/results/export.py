"""Plain-file exports of a run's database: ``summary.json`` and ``epochs.csv``.

Field names are a contract (documented in the README); numbers stay numbers, and a value
that is not finite is written as JSON null / an empty CSV cell.

The exports are what a run publishes. A DP trial's scores on a private validation split
(``VALIDATION_SCORES``) are exact statistics of private data that no epsilon covers, so the
exports leave them empty; the database keeps them for the report's noisy LR choice, which is
accounted (docs/privacy-ledger.md, "What a DP run releases").
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from robustlr.results.nofollow import write_atomic
from robustlr.results.store import EPOCH_NUMBERS, Store

EPOCH_FIELDS = ["trial", *EPOCH_NUMBERS]
VALIDATION_SCORES = ("val_acc", "val_loss", "monitor_val_robust_acc")


def scores_private_validation(summary: dict[str, Any]) -> bool:
    """A DP trial (its ledger says whether it holds a guarantee) scored on a validation split
    carved from the private training data and not declared public."""
    return ("dp_guarantee" in summary and not summary.get("public_validation")
            and bool(summary.get("val_examples")))


def published(summaries: list[dict[str, Any]], rows: list[dict[str, Any]]
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The summaries and epoch rows with every private validation score withheld (None)."""
    private = {s.get("trial") for s in summaries if scores_private_validation(s)}

    def withheld(record: dict[str, Any]) -> dict[str, Any]:
        if record.get("trial") not in private:
            return record
        return {**record, **{key: None for key in VALIDATION_SCORES if key in record}}

    return [withheld(s) for s in summaries], [withheld(r) for r in rows]


def epoch_columns(rows: list[dict[str, Any]]) -> list[str]:
    extra = sorted({key for row in rows for key in row} - set(EPOCH_FIELDS),
                   key=lambda k: (k.startswith("test_acc_class"), _class_index(k), k))
    return EPOCH_FIELDS + extra


def _class_index(name: str) -> int:
    tail = name.rsplit("class", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def write_exports(store: Store, run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    summaries, rows = store.summaries(), store.epochs()
    public_summaries, public_rows = published(summaries, rows)
    write_atomic(run_dir / "summary.json", json.dumps(public_summaries, indent=2) + "\n")
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=epoch_columns(public_rows), extrasaction="ignore")
    writer.writeheader()
    for row in public_rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_atomic(run_dir / "epochs.csv", table.getvalue())
    return summaries, rows
