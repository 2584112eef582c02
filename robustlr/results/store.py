"""The results database of a run folder (SQLite), written by one writer: the parent process.

Each epoch row is committed as it arrives, so a kill loses at most the epoch in flight. A
trial that did not reach a final status is re-run from scratch on resume; its partial rows
are replaced (the primary key is (trial, epoch)), never duplicated.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from robustlr.errors import InputError, RunFailure
from robustlr.nofollow import refuse_symlink
from robustlr.records import SUMMARY_METRICS
from robustlr.results import writer_lock

FINAL_STATUSES = ("ok", "diverged", "failed", "budget_exhausted")
EPOCH_NUMBERS = ("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                 "test_loss", "test_acc", "epoch_seconds", "samples_per_second")
SIDE_FILES = ("-wal", "-shm", "-journal", ".lock")
INTERRUPTED = "interrupted"
"""A trial whose worker died (killed, out of memory): not final, ``--resume`` re-runs it."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    trial TEXT PRIMARY KEY, position INTEGER NOT NULL, spec TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', summary TEXT, error TEXT, updated REAL);
CREATE TABLE IF NOT EXISTS epochs (
    trial TEXT NOT NULL REFERENCES trials(trial), epoch INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (trial, epoch));
"""


class StoreError(RunFailure):
    """The database cannot be written (read-only folder, full disk, not a results file, or
    another process is writing it)."""


def _hint(error: sqlite3.Error, path: Path) -> str:
    """SQLite says "unable to open database file" for a read-only folder; name the cause."""
    text = str(error)
    if not os.access(path.parent, os.W_OK):
        return f"{text} ({path.parent} is read-only)"
    if "full" in text or "I/O" in text:
        return f"{text} (is the disk full?)"
    return text


def _json(value: Any) -> str:
    # NaN is not JSON; store it as null so every reader agrees.
    return json.dumps(_finite(value), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        # SQLite opens (and creates) its files following links: a planted results.sqlite,
        # -wal or -shm link would have it write into the file the link names
        for name in (self.path.name, *(self.path.name + tail for tail in SIDE_FILES)):
            refuse_symlink(self.path.with_name(name))
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            _check_integrity(self._db, self.path)
            self._db.executescript(_SCHEMA)
            _check_schema(self._db, self.path)
        except sqlite3.Error as error:
            raise self._error("open", error) from None
        except StoreError:
            self._db.close()
            raise
        self._lock: IO[str] | None = None

    def _error(self, verb: str, error: sqlite3.Error) -> StoreError:
        return StoreError(f"cannot {verb} results database {self.path}: {_hint(error, self.path)}")

    def claim_writer(self) -> None:
        """Become the database's only writer until close(), or fail at once if another
        process is one. SQLite would serialise two runners' writes safely, but both would
        train and record the same trials. Two guards: the kernel's lock on ``.lock`` (a killed
        writer frees it at once), and the writer's identity in the database itself, so that
        deleting the lock file does not let a second writer in beside a live one."""
        self._lock = writer_lock.acquire(self.path.with_name(self.path.name + ".lock"), StoreError)
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute("SELECT value FROM meta WHERE key = 'writer'").fetchone()
                other = writer_lock.live_writer(row[0] if row else None)
                if other is not None:
                    raise StoreError(f"{self.path.parent} is being written by another robustlr "
                                     f"process (pid {other}; its lock file was removed); wait for "
                                     "it to end or use another folder")
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('writer', ?)",
                                 (writer_lock.identity(),))
        except sqlite3.Error as error:
            self._release()
            raise self._error("write", error) from None
        except StoreError:
            self._release()
            raise

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    def close(self) -> None:
        if self._lock is not None:
            try:
                self._write("DELETE FROM meta WHERE key = 'writer' AND value = ?",
                            (writer_lock.identity(),))
            except StoreError:
                pass  # a stale row names a dead pid, which the next writer ignores
        self._db.close()
        self._release()

    def _write(self, sql: str, params: Iterable[Any] = ()) -> None:
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(sql, tuple(params))
        except sqlite3.Error as error:
            raise self._error("write", error) from None

    def set_meta(self, key: str, value: str) -> None:
        self._write("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def register(self, position: int, trial: str, spec: dict[str, Any]) -> None:
        self._write("INSERT OR IGNORE INTO trials (trial, position, spec) VALUES (?, ?, ?)",
                    (trial, position, _json(spec)))

    def status(self, trial: str) -> str | None:
        row = self._db.execute("SELECT status FROM trials WHERE trial = ?", (trial,)).fetchone()
        return row[0] if row else None

    def start(self, trial: str) -> None:
        """Mark a trial running and drop rows a killed attempt left behind."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM epochs WHERE trial = ?", (trial,))
                self._db.execute("UPDATE trials SET status = 'running', summary = NULL, "
                                 "error = NULL, updated = ? WHERE trial = ?", (time.time(), trial))
        except sqlite3.Error as error:
            raise self._error("write", error) from None

    def add_epoch(self, trial: str, epoch: int, record: dict[str, Any]) -> None:
        self._write("INSERT OR REPLACE INTO epochs VALUES (?, ?, ?)", (trial, epoch, _json(record)))

    def finish(self, trial: str, status: str, summary: dict[str, Any], error: str | None = None) -> None:
        self._write("UPDATE trials SET status = ?, summary = ?, error = ?, updated = ? "
                    "WHERE trial = ?", (status, _json(summary), error, time.time(), trial))

    def summaries(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT summary FROM trials WHERE summary IS NOT NULL "
                                "ORDER BY position").fetchall()
        return [_summary(row[0], "a trial summary", self.path) for row in rows]

    def epochs(self, trial: str | None = None) -> list[dict[str, Any]]:
        """Every epoch row in grid order, or only ``trial``'s."""
        if trial is not None:
            rows = self._db.execute("SELECT record FROM epochs WHERE trial = ? ORDER BY epoch",
                                    (trial,)).fetchall()
        else:
            rows = self._db.execute("SELECT e.record FROM epochs e JOIN trials t USING (trial) "
                                    "ORDER BY t.position, e.epoch").fetchall()
        return [_typed(_record(row[0], "an epoch row", self.path), EPOCH_NUMBERS,
                       "an epoch row", self.path) for row in rows]

    def trials(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        """(trial, status, summary or None) of every registered trial, in grid order."""
        rows = self._db.execute("SELECT trial, status, summary FROM trials ORDER BY position")
        return [(trial, status, None if summary is None
                 else _summary(summary, f"trial {trial}'s summary", self.path))
                for trial, status, summary in rows.fetchall()]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM trials GROUP BY status").fetchall()
        return dict(rows)


_COLUMNS = {"meta": ["key", "value"],
            "trials": ["trial", "position", "spec", "status", "summary", "error", "updated"],
            "epochs": ["trial", "epoch", "record"]}


def _check_schema(db: sqlite3.Connection, path: Path) -> None:
    """A database whose tables were replaced is not silently resumed or reported."""
    for table, columns in _COLUMNS.items():
        found = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        if found != columns:
            raise StoreError(f"{path} is not a robustlr results database: table {table} has "
                             f"columns {found}, expected {columns} (was it edited?)")


def _check_integrity(db: sqlite3.Connection, path: Path) -> None:
    """A database with damaged pages reads back wrong or partial rows (a gate on it could pass):
    SQLite's own check of every page and index, before any command reads it."""
    problems = [str(row[0]) for row in db.execute("PRAGMA quick_check(3)").fetchall()]
    if problems != ["ok"]:
        found = "; ".join(" ".join(problem.split()) for problem in problems)
        raise StoreError(f"{path} is damaged (SQLite integrity check: {found[:200]}); restore it "
                         "from a copy, or re-run the grid")


def _typed(record: dict[str, Any], numeric: Iterable[str], what: str, path: Path) -> dict[str, Any]:
    """A numeric field holding a string (or a list) is an error, not a value readers skip: a
    report would silently drop the trial, a gate would call its bound missing."""
    for key in numeric:
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise StoreError(f"{path}: {what} has {key} = {value!r}, not a number (the database "
                             "was edited or is corrupted); restore it, or re-run the trial")
    return record


def _summary(text: Any, what: str, path: Path) -> dict[str, Any]:
    return _typed(_record(text, what, path), SUMMARY_METRICS, what, path)


def _record(text: Any, what: str, path: Path) -> dict[str, Any]:
    """One JSON object of the database; anything else is one line naming it (exit 1)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise StoreError(f"{path}: {what} is not a JSON object (the database was edited or is "
                         "corrupted); restore it, or re-run the trial")
    return value


def load_trials(run_dir: Path, what: str = "RUN_DIR") -> list[tuple[str, str, dict[str, Any] | None]]:
    """(trial, status, summary or None) of every trial in the run's database, which alone is
    trusted: summary.json is an export anyone can edit. ``what`` names the argument in errors."""
    database = run_dir / "results.sqlite"
    if not database.is_file():
        raise InputError(f"{what}: {run_dir} is not a robustlr run folder (no results.sqlite)")
    try:
        store = Store(database)
        try:
            return store.trials()
        finally:
            store.close()
    except StoreError as error:
        raise StoreError(f"{what}: {error}") from None


def load_summaries(run_dir: Path, what: str = "RUN_DIR") -> list[dict[str, Any]]:
    """The summaries of the run's finished trials, from its database."""
    return [summary for _, status, summary in load_trials(run_dir, what)
            if status in FINAL_STATUSES and summary is not None]
