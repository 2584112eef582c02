"""Hostile input and faults, as a careful user and an attacker would try them: every bad input is
one line (exit 2 for a config or an argument, 1 for a run folder) that leaves nothing behind;
untrusted files never run code; no write follows a planted symlink; one writer per folder."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robustlr import experiment
from robustlr.results.store import Store, StoreError
from robustlr.runs.folder import run_in_folder
from tests.helpers import cli, one_line, tiny, write_config

SYNTHETIC = {"num_examples": 240, "num_classes": 3, "shape": [1, 6, 6]}
BAD_CONFIGS = {
    "an infinite LR scale": (tiny(lr_scales=[float("inf")]), "lr_scales[0]"),
    "a negative seed": (tiny(seeds=[-1], data={"limit": 50}), "seeds[0]"),
    "a seed of 2**70": (tiny(seeds=[2**70]), "seeds[0]"),
    "a negative split seed": (tiny(data={"split_seed": -1}), "data.split_seed"),
    "1e10 synthetic examples": (tiny(data={"synthetic": {**SYNTHETIC, "num_examples": 10**10}}),
                                "data.synthetic.num_examples"),
    "an infinite LR": (tiny(train={"lr": float("inf")}), "train.lr"),
    "an infinite weight decay": (tiny(train={"weight_decay": float("inf")}), "train.weight_decay"),
    "a repeated spec key": (tiny(schedules=["cosine(warmup=0.5, warmup=0.1)"]), "given twice"),
    "a negative hidden size": (tiny(model={"name": "mlp", "hidden": [-1]}), "hidden"),
    "device cuda:abc": (tiny(train={"device": "cuda:abc"}), "train.device"),
    "a batch of 1e30": (tiny(train={"batch_size": 1e30}), "train.batch_size"),
    "a batch larger than the data": (tiny(train={"batch_size": 10_000}), "train.batch_size"),
    "a 300-character name": (tiny(name="a" * 300), "name"),
    "9**9**9 in a spec": (tiny(schedules=["step(gamma=9**9**9)"]), "exponent"),
    "2.0**2000 in a spec": (tiny(schedules=["step(gamma=2.0**2000)"]), "exponent"),
    "1e999 in a spec": (tiny(schedules=["step(gamma=1e999)"]), "finite"),
    "a 50k-term sum": (tiny(schedules=["step(gamma=" + "1+" * 50_000 + "1)"]), "longer than"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_a_bad_config_is_one_line_exit_2_and_leaves_nothing(tmp_path, case):
    raw, field = BAD_CONFIGS[case]
    out = tmp_path / "run"
    started = time.monotonic()
    message = one_line(cli("run", write_config(tmp_path / "c.yaml", raw), "--out", out,
                           "--no-progress"), 2)
    assert field in message and time.monotonic() - started < 30
    assert not out.exists()


BOMB = ("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)))
BAD_TEXTS = {
    "a binary file": (bytes(range(256)) * 4, "not UTF-8 text"),
    "a repeated YAML key": (b"schedules: [constant]\nschedules: [cosine]\n", "repeated at line 2"),
    "an alias bomb": ((BOMB + "schedules: [constant]\n").encode(), "alias bomb"),
    "an alias bomb in a mapping spec": (
        (BOMB + "schedules: [{name: step, milestones: *i}]\n").encode(), "alias bomb"),
    "a self-referencing anchor": (b"schedules: &s [constant, *s]\n", "contains it"),
    "a deep nesting": (b"schedules: " + b"[" * 3000 + b"]" * 3000 + b"\n", "levels deep"),
}


@pytest.mark.parametrize("case", list(BAD_TEXTS))
def test_a_hostile_config_file_is_one_line_exit_2(tmp_path, case):
    text, fragment = BAD_TEXTS[case]
    (tmp_path / "c.yaml").write_bytes(text)
    started = time.monotonic()
    assert fragment in one_line(cli("run", tmp_path / "c.yaml", "--out", tmp_path / "run"), 2)
    assert time.monotonic() - started < 10 and not (tmp_path / "run").exists()


def test_out_naming_an_existing_file_is_one_line_and_the_file_is_kept(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    message = one_line(cli("run", write_config(tmp_path / "c.yaml", tiny()), "--out", target), 2)
    assert "--out" in message and target.read_text() == "mine"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    config = experiment.from_mapping(tiny(train={"epochs": 2}))
    return run_in_folder(config, out=tmp_path_factory.mktemp("hostile") / "run", show_progress=False)


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def _sql(run_dir: Path, *statements: str) -> None:
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        for statement in statements:
            db.execute(statement)


@pytest.mark.parametrize("statement, words", [
    ("UPDATE trials SET summary = '{\"clean_acc\": 0.5' WHERE position = 0", "summary"),
    ("UPDATE trials SET summary = '[1, 2]' WHERE position = 0", "summary"),
    ("UPDATE epochs SET record = 'not json' WHERE epoch = 1", "epoch row"),
])
def test_a_corrupted_record_in_the_database_is_one_line_exit_1_under_report(
        finished, tmp_path, statement, words):
    run_dir = _copy(finished, tmp_path)
    _sql(run_dir, statement)
    message = one_line(cli("report", run_dir), 1)
    assert words in message and "is not a JSON object" in message


def test_a_replaced_meta_table_is_refused_by_resume(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    _sql(run_dir, "DROP TABLE meta", "CREATE TABLE meta (junk BLOB)")
    before = _dump(run_dir)
    message = one_line(cli("run", "--resume", run_dir, "--no-progress"), 1)
    assert "not a robustlr results database" in message and "meta" in message
    assert _dump(run_dir) == before


def _dump(run_dir: Path) -> list[str]:
    """The database's content (its header counts opens, which is not a change of content)."""
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        return list(db.iterdump())


def test_exports_and_reports_never_write_through_a_planted_symlink(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    planted = ["summary.json.partial", "epochs.csv.partial", "report.html.partial",
               "report.md.partial"]
    victims = {name: tmp_path / f"victim-{name}" for name in planted}
    for name, victim in victims.items():
        victim.write_text("the user's file")
        (run_dir / name).symlink_to(victim)
    assert cli("report", run_dir).exit_code == 0
    assert all(victim.read_text() == "the user's file" for victim in victims.values())
    for name in planted:
        assert not (run_dir / name).exists() and (run_dir / name.removesuffix(".partial")).is_file()


def test_a_symlinked_figures_folder_or_lock_file_is_refused(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(run_dir / "figures", ignore_errors=True)
    (run_dir / "figures").symlink_to(elsewhere)
    assert "symbolic link" in one_line(cli("report", run_dir), 1)
    assert list(elsewhere.iterdir()) == []
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file")
    (run_dir / "results.sqlite.lock").unlink(missing_ok=True)
    (run_dir / "results.sqlite.lock").symlink_to(victim)
    assert "symbolic link" in one_line(cli("run", "--resume", run_dir, "--no-progress"), 1)
    assert victim.read_text() == "the user's file"


HOLD_WRITER = """
import sys, time
from robustlr.results.store import Store
store = Store(sys.argv[1])
store.claim_writer()
print("claimed", flush=True)
time.sleep(60)
"""


def test_deleting_the_lock_file_does_not_admit_a_second_writer(tmp_path):
    database = tmp_path / "results.sqlite"
    writer = subprocess.Popen([sys.executable, "-c", HOLD_WRITER, str(database)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "claimed"
        (tmp_path / "results.sqlite.lock").unlink()
        second = Store(database)
        with pytest.raises(StoreError, match=f"pid {writer.pid}; its lock file was removed"):
            second.claim_writer()
        second.close()
    finally:
        writer.kill()
        writer.wait(timeout=30)
    admitted = Store(database)  # the writer is dead: its row no longer counts
    admitted.claim_writer()
    admitted.close()


class _Payload:
    """Unpickling this runs code: it writes a file."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "pwned"))


def _cifar_folder(root: Path, planted: Path | None = None) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"batch_label": name, "labels": [int(v) for v in rng.integers(0, 10, 20)],
                 "data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                 "filenames": [f"{name}_{i}.png" for i in range(20)]}
        if planted is not None and name == "data_batch_3":
            batch["data"] = _Payload(planted)
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def test_cifar_batches_load_without_running_a_planted_payload(tmp_path):
    from robustlr.data import DataConfig
    from robustlr.data.sources import DATA_SOURCES

    _cifar_folder(tmp_path / "good")
    source = DATA_SOURCES.loader("cifar10")(DataConfig(name="cifar10", root=str(tmp_path / "good")))
    assert source.x.shape == (100, 3, 32, 32) and source.x_test.shape == (20, 3, 32, 32)

    planted = tmp_path / "pwned.txt"
    _cifar_folder(tmp_path / "evil", planted)
    raw = tiny(data={"name": "cifar10", "root": str(tmp_path / "evil")})
    del raw["data"]["synthetic"]
    message = one_line(cli("run", write_config(tmp_path / "c.yaml", raw), "--out",
                           tmp_path / "run"), 2)
    assert "data_batch_3" in message and "refused to load" in message
    assert not planted.exists() and not (tmp_path / "run").exists()


def test_checkpoint_metadata_is_parsed_with_the_bounded_grammar(tmp_path):
    from robustlr import models
    from robustlr.models.io import CheckpointError

    meta = {"format": 1, "spec": "mlp(hidden=[9**9**9])", "input_shape": [1, 6, 6],
            "num_classes": 3, "mean": [0.5], "std": [0.2], "extra": None}
    torch.save({"metadata": json.dumps(meta), "state_dict": {}}, tmp_path / "bomb.pt")
    started = time.monotonic()
    with pytest.raises(CheckpointError, match="exponent"):
        models.load(tmp_path / "bomb.pt")
    assert time.monotonic() - started < 5
    torch.save({"metadata": json.dumps({**meta, "spec": "mlp", "input_shape": [10**12]}),
                "state_dict": {}}, tmp_path / "huge.pt")
    with pytest.raises(CheckpointError, match="input_shape"):
        models.read_metadata(tmp_path / "huge.pt")
    assert "not a JSON object" in one_line(_attack(tmp_path, "[]"), 2)


def _attack(tmp_path: Path, metadata: str):
    torch.save({"metadata": metadata, "state_dict": {}}, tmp_path / "odd.pt")
    return cli("attack", tmp_path / "odd.pt", "--data", "digits", "--attack", "fgsm(eps=0.1)",
               "--device", "cpu")



# --- worker and parent deaths, with real signals -------------------------------------------

GRID = tiny(schedules=["constant", "cosine", "linear", "exponential"], train={"epochs": 12})


def _running_with_epochs(database: Path) -> set[str]:
    """Trials the database shows running with at least one epoch row: the event a kill waits
    for (a deadline raced against the machine's load would flake)."""
    if not database.exists():
        return set()
    try:
        with sqlite3.connect(database, timeout=1) as db:
            rows = db.execute("SELECT DISTINCT t.trial FROM trials t JOIN epochs e USING (trial) "
                              "WHERE t.status = 'running'").fetchall()
    except sqlite3.Error:
        return set()
    return {trial for (trial,) in rows}


def _wait_for(condition, what: str, limit: float = 300.0):
    started = time.monotonic()
    while (found := condition()) is None or found is False:
        # a generous limit that only a hang reaches; the wait itself is on the event
        assert time.monotonic() - started < limit, f"never saw {what}"
        time.sleep(0.05)
    return found


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def _forked_children(pid: int) -> set[int]:
    """Children that are forks of ``pid`` (the pool's workers share its command line), not
    helpers it spawned: multiprocessing's resource tracker can start mid-test in a long-lived
    pytest worker and would then be the child started last."""
    def command(of: int) -> bytes:
        try:
            return Path(f"/proc/{of}/cmdline").read_bytes()
        except OSError:
            return b""
    own = command(pid)
    return {child for child in _children(pid) if command(child) == own}


def _started_last(pids: set[int]) -> int:
    """The child started last, by its start time (field 22 of /proc/PID/stat, clock ticks since
    boot): pids wrap at /proc/sys/kernel/pid_max (32768 here, passed by a CI run's installs and
    suite), so the largest pid can be the oldest worker, whose trial may just have ended."""
    def started(pid: int) -> int:
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        except OSError:
            return -1  # already ended: never the worker of the newest trial
    return max(pids, key=started)


def _gone(pids: set[int]) -> bool:
    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"  # a zombie has ended; only its parent's wait is missing
    return not any(alive(pid) for pid in pids)


def _statuses(run_dir: Path) -> tuple[dict[str, str], list[tuple[str, int]]]:
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        return (dict(db.execute("SELECT trial, status FROM trials")),
                db.execute("SELECT trial, epoch FROM epochs").fetchall())


def _resume_finishes_everything(run_dir: Path) -> None:
    run_in_folder(None, resume=run_dir, workers=2, show_progress=False)
    statuses, epochs = _statuses(run_dir)
    assert set(statuses.values()) == {"ok"} and len(statuses) == 4
    assert len(epochs) == len(set(epochs)) == 4 * 12


def _held_after_each_epoch(release: Path):
    """``tasks.run_task`` whose worker waits after sending each epoch until ``release`` exists.
    A held worker cannot end its trial, so a kill is mid-trial by construction: a look at the
    database cannot tell, because the run's parent records a worker's events some time after
    they are sent (a small trial can end in that time, and the kill then interrupts nothing)."""
    from robustlr.runs import tasks
    from robustlr.runs.events import EpochEnded

    def execute_held(task, emit) -> None:
        def emit_then_wait(event) -> None:
            emit(event)
            while isinstance(event, EpochEnded) and not release.exists():
                time.sleep(0.01)
        tasks.run_task(task, emit_then_wait)
    return execute_held


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_killed_workers_interrupt_only_their_trials_and_resume_finishes_them(tmp_path,
                                                                              monkeypatch):
    import threading

    from robustlr.runs.folder import TrialsInterrupted

    run_dir, outcome, release = tmp_path / "run", [], tmp_path / "release"
    # forked workers inherit the patch (the pool forks where no CUDA context exists)
    monkeypatch.setattr("robustlr.runs.pool.run_task", _held_after_each_epoch(release))

    def run() -> None:
        try:
            run_in_folder(experiment.from_mapping(GRID), out=run_dir, workers=2, show_progress=False)
        except Exception as error:  # what the run ends with is the assertion below
            outcome.append(error)

    runner = threading.Thread(target=run)
    runner.start()
    seen: set[str] = set()
    try:
        for signal_number in (9, 15):  # SIGKILL, then SIGTERM, each of a worker mid-trial
            database = run_dir / "results.sqlite"
            _wait_for(lambda: _running_with_epochs(database) - seen or None,  # noqa: B023
                      "a new running trial with an epoch row")
            seen |= _running_with_epochs(database)
            # every worker is held mid-trial; the newest runs the trial the pool started last
            victim = _started_last(_forked_children(os.getpid()))
            os.kill(victim, signal_number)
            _wait_for(lambda victim=victim: _gone({victim}), "the worker's end")
    finally:
        release.touch()  # the held workers go on, and the run ends even when a wait failed
    runner.join(timeout=600)
    assert len(outcome) == 1 and isinstance(outcome[0], TrialsInterrupted), outcome
    statuses, _ = _statuses(run_dir)
    interrupted = sorted(t for t, s in statuses.items() if s == "interrupted")
    assert len(interrupted) == 2 and "2 trials were interrupted" in str(outcome[0])
    assert sorted(s for s in statuses.values() if s != "interrupted") == ["ok", "ok"]
    _resume_finishes_everything(run_dir)


def _parent(config: Path, run_dir: Path) -> None:
    run_in_folder(experiment.load(config), out=run_dir, workers=2, show_progress=False)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("signal_number", [9, 15])
def test_workers_die_with_their_parent_and_resume_finishes_the_grid(tmp_path, signal_number,
                                                                    monkeypatch):
    import multiprocessing

    config, run_dir = write_config(tmp_path / "c.yaml", GRID), tmp_path / "run"
    release = tmp_path / "release"
    # held workers: the grid cannot end before the kill, and a worker is there to outlive it
    monkeypatch.setattr("robustlr.runs.pool.run_task", _held_after_each_epoch(release))
    # a forked parent starts at once (a fresh interpreter spends seconds importing torch)
    parent = multiprocessing.get_context("fork").Process(target=_parent, args=(config, run_dir))
    parent.start()
    try:
        _wait_for(lambda: _running_with_epochs(run_dir / "results.sqlite") or None,
                  "a running trial with an epoch row")
        workers = _children(parent.pid)
        assert workers, "the parent should have workers"
        os.kill(parent.pid, signal_number)
        parent.join(timeout=60)
        assert parent.exitcode == -signal_number
        started = time.monotonic()
        _wait_for(lambda: _gone(workers), "the workers' end", limit=10)
        assert time.monotonic() - started < 5, "workers outlived their parent"
    finally:
        parent.kill()
        release.touch()
    if signal_number == 9:  # resume after a kill: the SIGTERM case is the same folder state
        _resume_finishes_everything(run_dir)
