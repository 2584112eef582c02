"""The Ray backend on a real local Ray: the numbers of the local pool, failed trials recorded
while the grid goes on, kill -9 then --resume with every trial and epoch exactly once, and the
one-line errors of the command line."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import kill_when_frozen, tiny, write_config

ray = pytest.importorskip("ray")

from robustlr import experiment  # noqa: E402
from robustlr.cli import main  # noqa: E402
from robustlr.grid import Trial, expand  # noqa: E402
from robustlr.results.store import Store  # noqa: E402
from robustlr.runs.folder import run_in_folder  # noqa: E402
from robustlr.runs.progress import Progress  # noqa: E402
from robustlr.runs.ray_backend import run_ray  # noqa: E402
from robustlr.runs.tasks import Recorder, TrialTask  # noqa: E402

TIMING = {"train_seconds", "wall_seconds", "samples_per_second", "epoch_seconds", "eval_seconds"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process, its process group and every descendant (Ray's workers start their
    own process groups)."""
    pids = _descendants(process.pid)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


@pytest.fixture(scope="module")
def ray_address():
    """A 2-CPU Ray head started once for the module; this process joins it, so the tests
    share warm workers (a robustlr import costs a Ray worker seconds)."""
    temp = Path(tempfile.mkdtemp(prefix="rl-ray-"))  # short: Ray's socket paths must fit
    port = _free_port()
    with pytest.MonkeyPatch.context() as patch:
        # Ray 2.60 turns token authentication on when ~/.ray/auth_token exists, and then a
        # driver given an explicit address must opt in too; a throwaway cluster opts out
        patch.setenv("RAY_AUTH_MODE", "disabled")
        # keep this process's idle workers while the CLI's job runs beside them
        patch.setenv("RAY_num_workers_soft_limit", "8")
        log = (temp / "start.log").open("w")
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
             "--num-cpus", "2", "--port", str(port), "--temp-dir", str(temp),
             "--ray-client-server-port", str(_free_port()),
             "--dashboard-agent-listen-port", str(_free_port()),
             "--include-dashboard=false", "--disable-usage-stats"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            address = f"127.0.0.1:{port}"
            deadline = time.time() + 120
            while "Ray runtime started" not in (temp / "start.log").read_text():
                assert process.poll() is None and time.time() < deadline, \
                    (temp / "start.log").read_text()
                time.sleep(0.2)
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            yield address
        finally:
            ray.shutdown()
            _kill_tree(process)
            log.close()
            shutil.rmtree(temp, ignore_errors=True)


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def read(run_dir: Path) -> tuple[list[dict], list[dict]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    with (run_dir / "epochs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return summary, rows


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def test_ray_gives_the_numbers_of_the_local_pool(tmp_path, ray_address):
    config = experiment.from_mapping(tiny(seeds=[0, 1]))
    local = run_in_folder(config, out=tmp_path / "local", workers=2, show_progress=False)
    remote = run_in_folder(config, out=tmp_path / "ray", workers=2, show_progress=False,
                     backend="ray", address=ray_address)
    local_summary, local_rows = read(local)
    ray_summary, ray_rows = read(remote)
    assert len(ray_summary) == 4 and {r["status"] for r in ray_summary} == {"ok"}
    assert without_timing(ray_summary) == without_timing(local_summary)
    assert len(ray_rows) == 12 and without_timing(ray_rows) == without_timing(local_rows)


class _ExitWhenUnpickled:
    """Kills the process that unpickles it: a Ray worker dies under its task."""

    def __reduce__(self):
        return os._exit, (3,)


def test_failed_trials_are_recorded_and_the_grid_goes_on(tmp_path, ray_address):
    good = experiment.from_mapping(tiny())
    # a 2-D CNN cannot take 1-D signals: the trial raises when its model is built
    raising = experiment.from_mapping(tiny(schedules=["cosine"], model="cnn", data={
        "synthetic": {"num_examples": 120, "num_classes": 3, "shape": [1, 12]}}))
    ok_a, ok_b = expand(good)
    tasks = [TrialTask(good, ok_a, tmp_path, False),
             TrialTask(raising, expand(raising)[0], tmp_path, False),
             TrialTask(good, Trial("linear", "standard", 1.0, 0), tmp_path, _ExitWhenUnpickled()),
             TrialTask(good, ok_b, tmp_path, False)]
    store = Store(tmp_path / "results.sqlite")
    for position, task in enumerate(tasks):
        store.register(position, task.trial.id, task.trial.describe())
        store.start(task.trial.id)
    run_ray(tasks, Recorder(store, Progress(enabled=False)), address=ray_address, workers=2)

    with sqlite3.connect(store.path) as db:
        rows = dict(db.execute("SELECT trial, status || ' | ' || COALESCE(error, '') FROM trials"))
    store.close()
    assert rows[ok_a.id] == rows[ok_b.id] == "ok | "
    assert rows[tasks[1].trial.id].startswith("failed | ") and len(rows[tasks[1].trial.id]) > 12
    assert "interrupted" not in rows[tasks[1].trial.id]  # raised inside run_task: its own error
    assert rows[tasks[2].trial.id].startswith("interrupted | interrupted: its Ray worker died")
    epochs = Store(store.path).epochs()
    assert sorted((e["trial"], e["epoch"]) for e in epochs) == sorted(
        (t.id, epoch) for t in (ok_a, ok_b) for epoch in (1, 2, 3))


def _trial_rows(database: Path) -> tuple[list[tuple], list[tuple]]:
    with sqlite3.connect(database) as db:
        trials = db.execute("SELECT trial, status FROM trials").fetchall()
        epochs = db.execute("SELECT trial, epoch FROM epochs").fetchall()
    return trials, epochs


def _mid_grid(database: Path, *, epochs: int) -> bool:
    """A trial is done and another has recorded some epochs but not its last."""
    try:
        trials, rows = _trial_rows(database) if database.exists() else ([], [])
    except sqlite3.Error:  # the stopped driver holds the write lock: look again
        return False
    done = {t for t, s in trials if s == "ok"}
    recorded = Counter(t for t, _ in rows if t not in done)
    return bool(done) and len(done) < len(trials) and any(n < epochs for n in recorded.values())


def test_kill_9_then_resume_on_ray_finishes_every_trial_exactly_once(tmp_path, ray_address):
    config = tiny(schedules=["constant", "cosine", "linear", "exponential"], train={"epochs": 4},
                  data={"synthetic": {"num_examples": 3000, "num_classes": 3, "shape": [1, 6, 6]}})
    path = write_config(tmp_path / "grid.yaml", config)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "robustlr", "run", str(path), "--out", str(out),
               "--no-progress", "--backend", "ray", "--address", ray_address, "--workers", "2"]
    with (tmp_path / "stderr.txt").open("w") as stderr:
        process = subprocess.Popen(command, stderr=stderr, stdout=subprocess.DEVNULL,
                                   start_new_session=True)
    database = out / "results.sqlite"
    try:  # the driver is the database's only writer: stopped, it shows what the kill leaves
        kill_when_frozen(process, lambda: _mid_grid(database, epochs=4), limit=600)
    finally:
        _kill_tree(process)  # the driver only: the trials run in the cluster's workers
    trials, epochs = _trial_rows(database)
    unfinished = {t for t, s in trials if s == "running"}
    assert unfinished and any(t in unfinished for t, _ in epochs), "kill mid-trial"

    result = cli("run", "--resume", str(out), "--no-progress", "--backend", "ray",
                 "--address", ray_address)
    assert result.exit_code == 0, result.output
    trials, epochs = _trial_rows(database)
    assert sorted(s for _, s in trials) == ["ok"] * 4
    assert sorted(epochs) == sorted((t, e) for t, _ in trials for e in (1, 2, 3, 4))

    fresh = run_in_folder(experiment.from_mapping(config), out=tmp_path / "fresh", workers=1,
                    show_progress=False)
    resumed_summary, resumed_rows = read(out)
    fresh_summary, fresh_rows = read(fresh)
    assert without_timing(resumed_summary) == without_timing(fresh_summary)
    assert without_timing(resumed_rows) == without_timing(fresh_rows)


def test_address_needs_the_ray_backend(tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny())
    result = cli("run", str(config), "--backend", "local", "--address", "127.0.0.1:1",
                 "--out", str(tmp_path / "run"))
    assert result.exit_code == 2 and "--address: only with --backend ray" in result.output
    assert not (tmp_path / "run").exists()


def test_an_address_where_nothing_answers_is_one_line_exit_2(tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny())
    address = f"127.0.0.1:{_free_port()}"
    result = subprocess.run(  # a process of its own: this one may have joined a Ray already
        [sys.executable, "-m", "robustlr", "run", str(config), "--backend", "ray",
         "--address", address, "--out", str(tmp_path / "run"), "--no-progress"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"robustlr: error: --address: nothing answers at {address}; is a Ray head running "
        "there (ray start --head) and is this its port?"]
    assert not (tmp_path / "run").exists()  # checked before any folder is made


def test_without_ray_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr("robustlr.runs.folder.importlib.util.find_spec",
                        lambda name, *a: None if name == "ray" else find_spec(name, *a))
    config = write_config(tmp_path / "c.yaml", tiny())
    result = cli("run", str(config), "--backend", "ray", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, result.output
    assert "pip install 'robustlr[ray]'" in result.output and "\n" not in result.output.strip()
    assert not (tmp_path / "run").exists()
