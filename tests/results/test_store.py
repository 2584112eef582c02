"""The results database and the grid runner in isolation (milliseconds, no training): what each
Store call writes and reads back, in which order, the one-line errors, the writer's identity
row, and which trials a grid hands to which backend."""

from __future__ import annotations

import math
import os
import re
import sqlite3
import subprocess
import sys
import types

import pytest
import torch
from helpers import tiny

from robustlr import experiment
from robustlr.results import store as store_module
from robustlr.results import writer_lock
from robustlr.results.store import FINAL_STATUSES, Store, StoreError
from robustlr.runs import grid_runner


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "results.sqlite")
    yield opened
    opened.close()


def raw(store: Store, sql: str, *params):
    return store._db.execute(sql, params).fetchall()


def test_a_new_database_has_the_documented_tables_in_wal_mode(store):
    assert raw(store, "PRAGMA journal_mode") == [("wal",)]
    assert raw(store, "PRAGMA busy_timeout") == [(30000,)]  # waits 30 s for another writer
    for table, columns in store_module._COLUMNS.items():
        assert [row[1] for row in raw(store, f"PRAGMA table_info({table})")] == columns
    assert store.counts() == {} and store.summaries() == [] and store.trials() == []


def test_register_is_idempotent_and_keeps_the_first_position_and_spec(store):
    store.register(1, "b", {"x": 1})
    store.register(0, "a", {"x": 0})
    store.register(5, "b", {"x": 99})  # a resume registers every trial again
    assert raw(store, "SELECT trial, position, spec, status, summary, error, updated FROM trials "
                      "ORDER BY position") == [("a", 0, '{"x": 0}', "pending", None, None, None),
                                               ("b", 1, '{"x": 1}', "pending", None, None, None)]
    assert store.status("a") == "pending" and store.status("missing") is None
    assert store.trials() == [("a", "pending", None), ("b", "pending", None)]
    assert store.counts() == {"pending": 2}


def test_start_drops_only_its_own_rows_and_clears_a_previous_attempt(store):
    for position, trial in enumerate(("a", "b")):
        store.register(position, trial, {})
        store.add_epoch(trial, 1, {"epoch": 1})
        store.finish(trial, "failed", {"status": "failed"}, error="boom")
    store.start("a")
    row = raw(store, "SELECT status, summary, error, updated FROM trials WHERE trial = 'a'")[0]
    assert row[:3] == ("running", None, None) and row[3] is not None
    assert store.epochs("a") == [] and store.epochs("b") == [{"epoch": 1}]
    assert store.status("b") == "failed" and store.counts() == {"running": 1, "failed": 1}


def test_epoch_rows_are_replaced_not_duplicated_and_read_in_grid_then_epoch_order(store):
    store.register(1, "late", {})
    store.register(0, "early", {})
    store.add_epoch("late", 2, {"e": "late2"})
    store.add_epoch("late", 1, {"e": "late1"})
    store.add_epoch("early", 1, {"e": "stale"})
    store.add_epoch("early", 1, {"e": "early1"})
    assert store.epochs("late") == [{"e": "late1"}, {"e": "late2"}]
    assert store.epochs() == [{"e": "early1"}, {"e": "late1"}, {"e": "late2"}]


def test_finish_writes_status_summary_error_and_time_and_summaries_follow_the_grid(store):
    store.register(1, "b", {})
    store.register(0, "a", {})
    store.register(2, "c", {})  # never finished: no summary
    store.finish("b", "failed", {"trial": "b"}, error="it raised")
    store.finish("a", "ok", {"trial": "a", "clean_acc": 0.5})
    rows = raw(store, "SELECT trial, status, summary, error FROM trials ORDER BY position")
    assert rows == [("a", "ok", '{"trial": "a", "clean_acc": 0.5}', None),
                    ("b", "failed", '{"trial": "b"}', "it raised"), ("c", "pending", None, None)]
    assert all(u is not None for (u,) in raw(store, "SELECT updated FROM trials WHERE summary "
                                                    "IS NOT NULL"))
    assert store.summaries() == [{"trial": "a", "clean_acc": 0.5}, {"trial": "b"}]
    assert store.trials() == [("a", "ok", {"trial": "a", "clean_acc": 0.5}),
                              ("b", "failed", {"trial": "b"}), ("c", "pending", None)]
    assert store.counts() == {"ok": 1, "failed": 1, "pending": 1}


def test_numbers_that_are_not_finite_are_stored_as_null_at_any_depth(store):
    store.register(0, "a", {})
    record = {"loss": math.nan, "acc": 0.25, "n": 3, "per_class": [1.0, math.inf, (-math.inf, 2)],
              "nested": {"x": math.nan, "ok": "text"}}
    store.finish("a", "diverged", record)
    (text,) = raw(store, "SELECT summary FROM trials")[0]
    assert "NaN" not in text and "Infinity" not in text
    assert store.summaries() == [{"loss": None, "acc": 0.25, "n": 3,
                                  "per_class": [1.0, None, [None, 2]],
                                  "nested": {"x": None, "ok": "text"}}]


def test_a_record_that_is_not_strict_json_is_refused_not_written(store):
    store.register(0, "a", {})
    with pytest.raises(ValueError):  # a non-finite number as a key: no null to stand for it
        store.add_epoch("a", 1, {math.nan: 1.0})
    assert store.epochs() == []


def test_meta_values_round_trip(store):
    assert store.meta("config") is None
    store.set_meta("config", "a")
    store.set_meta("config", "b")
    assert store.meta("config") == "b"


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "null"])
def test_a_corrupted_record_is_one_line_naming_the_database(store, text):
    store.register(0, "a", {})
    store.finish("a", "ok", {})
    store._db.execute("UPDATE trials SET summary = ?", (text,))
    message = (f"{store.path}: a trial summary is not a JSON object (the database was edited or "
               "is corrupted); restore it, or re-run the trial")
    with pytest.raises(StoreError, match=f"^{re.escape(message)}$"):
        store.summaries()
    with pytest.raises(StoreError, match=f"^{re.escape(f'{store.path}: trial a')}'s summary is "
                                         "not a JSON object"):
        store.trials()
    store._db.execute("INSERT INTO epochs VALUES ('a', 1, ?)", (text,))
    with pytest.raises(StoreError, match=f"^{re.escape(f'{store.path}: an epoch row')} is not a "
                                         "JSON object"):
        store.epochs("a")


def test_a_database_with_replaced_columns_is_refused_and_closed(tmp_path, monkeypatch):
    path = tmp_path / "results.sqlite"
    database = sqlite3.connect(path)
    database.execute("CREATE TABLE meta (key TEXT, other TEXT)")
    database.close()
    closed = []
    real = sqlite3.connect

    def connect(*args, **kwargs):
        connection = real(*args, **kwargs)
        return types.SimpleNamespace(execute=connection.execute,
                                     executescript=connection.executescript,
                                     close=lambda: closed.append(connection.close()))

    monkeypatch.setattr(store_module.sqlite3, "connect", connect)
    message = (f"{path} is not a robustlr results database: table meta has columns "
               "['key', 'other'], expected ['key', 'value'] (was it edited?)")
    with pytest.raises(StoreError, match=f"^{re.escape(message)}$"):
        Store(path)
    assert closed == [None]


def test_a_database_that_cannot_be_opened_is_one_line(tmp_path):
    path = tmp_path / "results.sqlite"
    path.mkdir()  # a folder where the database should be
    with pytest.raises(StoreError, match=f"^cannot open results database {re.escape(str(path))}: "
                                         "unable to open database file$"):
        Store(path)


def test_the_hint_names_a_read_only_folder_or_a_full_disk(tmp_path, monkeypatch):
    path = tmp_path / "results.sqlite"
    full = sqlite3.OperationalError("database or disk is full")
    io = sqlite3.OperationalError("disk I/O error")
    other = sqlite3.OperationalError("database is locked")
    assert store_module._hint(full, path) == "database or disk is full (is the disk full?)"
    assert store_module._hint(io, path) == "disk I/O error (is the disk full?)"
    assert store_module._hint(other, path) == "database is locked"
    checked = []
    monkeypatch.setattr(store_module.os, "access",
                        lambda where, mode: checked.append((where, mode)) and False)
    assert store_module._hint(full, path) == f"database or disk is full ({tmp_path} is read-only)"
    assert checked == [(tmp_path, os.W_OK)]


def test_a_failed_write_is_one_line_naming_verb_and_database(store):
    store._db.execute("PRAGMA query_only = ON")
    message = (f"cannot write results database {store.path}: attempt to write a readonly "
               "database")
    for call in (lambda: store.register(0, "a", {}), lambda: store.start("a"),
                 lambda: store.set_meta("k", "v")):
        with pytest.raises(StoreError, match=f"^{re.escape(message)}$"):
            call()


def test_the_writer_records_its_identity_and_removes_only_its_own_row(tmp_path):
    path = tmp_path / "results.sqlite"
    writer = Store(path)
    writer.claim_writer()
    assert writer.meta("writer") == writer_lock.identity()
    assert (tmp_path / "results.sqlite.lock").read_text() == str(os.getpid())
    writer.close()
    reader = Store(path)
    assert reader.meta("writer") is None
    reader.set_meta("writer", "12345:1:elsewhere")  # another host's row is not ours to delete
    reader.close()  # a reader that never claimed touches nothing
    writer = Store(path)
    assert writer.meta("writer") == "12345:1:elsewhere"
    writer.claim_writer()  # a writer on another host cannot be checked: the lock decides
    writer.close()
    check = Store(path)
    assert check.meta("writer") is None
    check.close()


def test_a_live_writer_named_in_the_database_is_refused_and_the_lock_released(tmp_path):
    path = tmp_path / "results.sqlite"
    first = Store(path)
    other = os.getppid()  # a live process on this host that is not this one
    first.set_meta("writer", writer_lock.identity(other))
    message = (f"{tmp_path} is being written by another robustlr process (pid {other}; its lock "
               "file was removed); wait for it to end or use another folder")
    with pytest.raises(StoreError, match=f"^{re.escape(message)}$"):
        first.claim_writer()
    assert first._lock is None
    assert first.meta("writer") == writer_lock.identity(other)  # left as it was
    first.close()


def test_a_lock_held_by_another_process_refuses_the_writer_in_one_line(tmp_path):
    path = tmp_path / "results.sqlite"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys\n"
         f"h = open({str(path) + '.lock'!r}, 'w'); fcntl.lockf(h, fcntl.LOCK_EX)\n"
         "h.write(str(os.getpid())); h.flush(); print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        store = Store(path)
        message = (f"{tmp_path} is being written by another robustlr process (pid {holder.pid}); "
                   "wait for it to end or use another folder")
        with pytest.raises(StoreError, match=f"^{re.escape(message)}$"):
            store.claim_writer()
        assert store.meta("writer") is None
        store.close()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_writer_that_cannot_record_itself_fails_in_one_line_and_frees_the_lock(tmp_path):
    path = tmp_path / "results.sqlite"
    store = Store(path)
    store._db.execute("PRAGMA query_only = ON")
    message = f"cannot write results database {path}: attempt to write a readonly database"
    with pytest.raises(StoreError, match=f"^{re.escape(message)}$"):
        store.claim_writer()
    assert store._lock is None
    store.close()
    other = Store(path)
    other.claim_writer()  # the lock was released
    other.close()


# -- the grid runner ---------------------------------------------------------------------------
@pytest.fixture
def grid(tmp_path):
    config = experiment.from_mapping(tiny(schedules=["constant", "cosine", "onecycle"],
                                             train={"epochs": 4}))
    return config, grid_runner.expand(config)


@pytest.mark.parametrize("status", ["pending", "running", "interrupted"])
def test_pending_trials_registers_the_grid_and_skips_only_final_statuses(store, grid, status):
    config, trials = grid
    assert len(trials) == 3
    store.register(0, trials[0].id, {})
    store.finish(trials[0].id, status, {})
    for final, trial in zip(FINAL_STATUSES, trials[1:]):
        store.register(9, trial.id, {})
        store.finish(trial.id, final, {})
    pending = grid_runner.pending_trials(config, store)
    assert pending == [trials[0]]
    assert raw(store, "SELECT trial, position FROM trials ORDER BY position") == \
        [(trials[0].id, 0)] + [(t.id, 9) for t in trials[1:]]
    fresh = Store(store.path.with_name("other.sqlite"))
    assert grid_runner.pending_trials(config, fresh) == trials
    assert [(t, json_spec) for t, json_spec in
            raw(fresh, "SELECT trial, spec FROM trials ORDER BY position")] == \
        [(t.id, store_module._json(t.describe())) for t in trials]
    fresh.close()


class _Progress:
    def __init__(self):
        self.started = None

    def start(self, trials, epochs):
        self.started = (trials, epochs)


@pytest.mark.parametrize("workers, backend", [(1, "local"), (2, "local"), (0, "local"),
                                              (3, "ray")])
def test_run_grid_starts_the_unfinished_trials_and_hands_them_to_one_backend(
        store, grid, tmp_path, monkeypatch, workers, backend):
    config, trials = grid
    store.register(1, trials[1].id, {})
    store.finish(trials[1].id, "ok", {})
    calls = []
    monkeypatch.setattr(grid_runner, "run_task", lambda task, record: calls.append(
        ("run_task", task, record)))
    monkeypatch.setattr(grid_runner, "run_pool", lambda tasks, n, record: calls.append(
        ("pool", tasks, n, record)))
    monkeypatch.setitem(sys.modules, "robustlr.runs.ray_backend", types.SimpleNamespace(
        run_ray=lambda tasks, record, *, address, workers: calls.append(
            ("ray", tasks, address, workers, record))))
    threads = []
    monkeypatch.setattr(grid_runner.torch, "set_num_threads", threads.append)
    progress = _Progress()
    grid_runner.run_grid(config, tmp_path, store, workers=workers, save_models=True,
                         progress=progress, backend=backend, address="ray://x",
                         observers=("obs",))
    todo = [trials[0], trials[2]]
    assert progress.started == (2, 2 * 4)
    assert [store.status(t.id) for t in trials] == ["running", "ok", "running"]
    tasks = [grid_runner.TrialTask(config, t, tmp_path, True) for t in todo]
    record = calls[0][-1]
    assert isinstance(record, grid_runner.Recorder)
    assert (record.store, record.progress, record.observers) == (store, progress, ("obs",))
    if backend == "ray":
        assert calls == [("ray", tasks, "ray://x", workers, record)] and threads == []
    elif workers <= 1:
        assert calls == [("run_task", task, record) for task in tasks] and threads == [1]
    else:
        assert calls == [("pool", tasks, workers, record)] and threads == []


def test_a_single_pending_trial_runs_in_process_whatever_the_workers(store, grid, tmp_path,
                                                                     monkeypatch):
    config, trials = grid
    for position, trial in enumerate(trials[1:]):
        store.register(position + 1, trial.id, {})
        store.finish(trial.id, "ok", {})
    calls = []
    monkeypatch.setattr(grid_runner, "run_task", lambda task, record: calls.append(task.trial))
    monkeypatch.setattr(grid_runner, "run_pool", lambda *a: pytest.fail("pool for one trial"))
    grid_runner.run_grid(config, tmp_path, store, workers=4, save_models=False,
                         progress=_Progress())
    assert calls == [trials[0]] and torch.get_num_threads() == 1


@pytest.mark.parametrize("cpus, expected", [(None, 1), (1, 1), (3, 3), (8, 8), (64, 8)])
def test_default_workers_is_the_cpu_count_capped_at_eight(monkeypatch, cpus, expected):
    monkeypatch.setattr(grid_runner.os, "cpu_count", lambda: cpus)
    assert grid_runner.default_workers() == expected
