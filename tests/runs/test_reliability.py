"""A full disk, a read-only folder and a second writer give one clear line and lose nothing.

Full and read-only filesystems are real: a small tmpfs, or a read-only bind mount, inside a
private user and mount namespace (`unshare -rm`), so no root is needed and nothing outside the
test sees them."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustlr import experiment
from robustlr.results.store import Store
from robustlr.runs.folder import run_in_folder
from tests.helpers import tiny, write_config

ROBUSTLR = str(Path(sys.executable).with_name("robustlr"))
FOUR_TRIALS = tiny(schedules=["constant", "cosine", "linear", "exponential"], train={"epochs": 4})


def _namespaces_work() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "true"], capture_output=True).returncode == 0


needs_namespaces = pytest.mark.skipif(not _namespaces_work(),
                                      reason="user and mount namespaces are not available")


def in_namespace(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                          text=True, timeout=300)


def trial_rows(run_dir: Path) -> tuple[dict[str, str], dict[str, list[int]]]:
    db = sqlite3.connect(run_dir / "results.sqlite")
    statuses = dict(db.execute("SELECT trial, status FROM trials"))
    epochs: dict[str, list[int]] = {}
    for trial, epoch in db.execute("SELECT trial, epoch FROM epochs ORDER BY trial, epoch"):
        epochs.setdefault(trial, []).append(epoch)
    db.close()
    return statuses, epochs


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("robustlr: error:"), stderr
    return lines[0]


def without_timing(records):
    timing = ("seconds", "samples_per_second")
    return [{k: v for k, v in r.items() if not any(t in k for t in timing)} for r in records]


@needs_namespaces
def test_a_full_disk_mid_run_stops_with_one_line_and_resume_loses_nothing(tmp_path):
    config = write_config(tmp_path / "c.yaml", FOUR_TRIALS)
    mount, copy = tmp_path / "disk", tmp_path / "copy"
    mount.mkdir()
    # 224 KiB holds the set-up and some trials' rows, not the whole grid's
    result = in_namespace(
        f"mount -t tmpfs -o size=224k tmpfs {mount} && "
        f"{ROBUSTLR} run {config} --out {mount}/run --workers 2 --no-progress; "
        f"code=$?; cp -r {mount}/run {copy}; exit $code")
    assert result.returncode == 1
    assert "disk is full" in one_error_line(result.stderr)
    statuses, epochs = trial_rows(copy)
    finished = [t for t, s in statuses.items() if s == "ok"]
    assert 0 < len(finished) < 4, statuses
    assert "failed" not in statuses.values(), "a refused write is not a failed trial"
    assert all(epochs[t] == [1, 2, 3, 4] for t in finished)

    run_in_folder(None, resume=copy, show_progress=False)  # in-process: a CLI start costs seconds
    statuses, epochs = trial_rows(copy)
    assert set(statuses.values()) == {"ok"} and len(statuses) == 4
    assert all(rows == [1, 2, 3, 4] for rows in epochs.values())
    fresh = run_in_folder(experiment.load(config), out=tmp_path / "fresh", show_progress=False)
    load = lambda d: without_timing(json.loads((d / "summary.json").read_text()))  # noqa: E731
    assert load(copy) == load(fresh)


@needs_namespaces
def test_a_read_only_folder_is_one_line_for_a_new_run_a_resume_and_a_report(tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny())
    place = tmp_path / "place"
    place.mkdir()
    run_in_folder(experiment.load(config), out=place / "run", show_progress=False)
    before = sorted(p.name for p in (place / "run").iterdir())
    read_only = f"mount --bind {place} {place} && mount -o remount,bind,ro {place}"
    commands = {
        "new": f"{ROBUSTLR} run {config} --out {place}/new --no-progress",
        "resume": f"{ROBUSTLR} run --resume {place}/run --no-progress",
        "report": f"{ROBUSTLR} report {place}/run",
    }
    script = read_only + "".join(
        f"; {command} 2> {tmp_path}/{name}.err; echo $? > {tmp_path}/{name}.code"
        for name, command in commands.items())
    assert in_namespace(script).returncode == 0
    codes = {name: int((tmp_path / f"{name}.code").read_text()) for name in commands}
    lines = {name: one_error_line((tmp_path / f"{name}.err").read_text()) for name in commands}
    assert codes == {"new": 2, "resume": 1, "report": 1}
    assert "Read-only file system" in lines["new"] and "--out" in lines["new"]
    assert all("read-only" in lines[name] for name in ("resume", "report")), lines
    assert not (place / "new").exists()
    assert sorted(p.name for p in (place / "run").iterdir()) == before


def test_a_second_writer_is_refused_while_the_first_runs_and_admitted_once_it_is_killed(tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny(train={"epochs": 100_000}))
    out = tmp_path / "run"
    first = subprocess.Popen([ROBUSTLR, "run", str(config), "--out", str(out), "--workers", "2",
                              "--no-progress"], stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # waits on events (the log exists; the second process ends), with limits that only a
        # hang reaches: a CLI start took 80 s on a loaded 2-core machine
        deadline = time.time() + 900
        while not (out / "run.log").exists():
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.2)
        second = subprocess.run([ROBUSTLR, "run", "--resume", str(out), "--no-progress"],
                                capture_output=True, text=True, timeout=900)
        assert first.poll() is None, "the first run should still be writing"
        assert second.returncode == 1
        assert f"pid {first.pid}" in one_error_line(second.stderr)
        assert "resumed" not in (out / "run.log").read_text()
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    # the kernel drops a killed writer's lock: the next writer is admitted at once
    store = Store(out / "results.sqlite")
    store.claim_writer()
    store.close()


def _hammer(path: str, worker: int, rows: int) -> None:
    store = Store(path)
    for epoch in range(rows):
        store.add_epoch(f"t{worker}", epoch, {"worker": worker, "epoch": epoch, "pad": "x" * 200})
    store.close()


def test_concurrent_writers_never_corrupt_the_database(tmp_path):
    path = tmp_path / "results.sqlite"
    store = Store(path)
    for worker in range(4):
        store.register(worker, f"t{worker}", {"worker": worker})
    store.close()
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_hammer, args=(str(path), w, 150)) for w in range(4)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
    assert [p.exitcode for p in writers] == [0, 0, 0, 0]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    counts = dict(db.execute("SELECT trial, COUNT(*) FROM epochs GROUP BY trial"))
    assert counts == {f"t{w}": 150 for w in range(4)}
    rows = [json.loads(r) for (r,) in db.execute("SELECT record FROM epochs WHERE trial = 't2'")]
    assert sorted(r["epoch"] for r in rows) == list(range(150)) and {r["worker"] for r in rows} == {2}
