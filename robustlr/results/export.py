"""Plain-file exports of a run's database: ``summary.json`` and ``epochs.csv``.

Field names are a contract (documented in the README); numbers stay numbers, and a value
that is not finite is written as JSON null / an empty CSV cell.
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


def epoch_columns(rows: list[dict[str, Any]]) -> list[str]:
    extra = sorted({key for row in rows for key in row} - set(EPOCH_FIELDS),
                   key=lambda k: (k.startswith("test_acc_class"), _class_index(k), k))
    return EPOCH_FIELDS + extra


def _class_index(name: str) -> int:
    tail = name.rsplit("class", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def write_exports(store: Store, run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    summaries, rows = store.summaries(), store.epochs()
    write_atomic(run_dir / "summary.json", json.dumps(summaries, indent=2) + "\n")
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=epoch_columns(rows), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_atomic(run_dir / "epochs.csv", table.getvalue())
    return summaries, rows
