"""No write in a run folder follows a planted link: the database and its -wal/-shm files, the
run log, the reports, the exports, the figures and every checkpoint, each planted as a link to a
file of the user's, is refused with one line (exit 1) and the linked file stays as it was."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch

from robustlr import experiment, models
from robustlr.nofollow import SymlinkRefused, write_atomic
from robustlr.results.store import Store
from robustlr.runs.folder import run_in_folder
from tests.helpers import cli, one_line, tiny


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    config = experiment.from_mapping(tiny(train={"epochs": 2, "checkpoints": "both"}))
    return run_in_folder(config, out=tmp_path_factory.mktemp("links") / "run", save_models=True,
                   show_progress=False)


def _trial_file(run_dir: Path, name: str) -> str:
    trial = sorted(p.name for p in (run_dir / "trials").iterdir())[0]
    return f"trials/{trial}/{name}"


FILES = ["results.sqlite", "results.sqlite-wal", "results.sqlite-shm", "run.log", "report.html",
         "report.md", "summary.json", "epochs.csv", "figures/*", "trials/*/model.pt",
         "trials/*/best.pt", "trials/*/last.pt"]


def _plant(run_dir: Path, pattern: str, tmp_path: Path) -> tuple[Path, bytes]:
    """Replace the file at ``pattern`` by a link to a victim file; returns the victim and its
    bytes. A database link points at a real SQLite file (what a resume would write into)."""
    if pattern == "figures/*":
        name = f"figures/{sorted(p.name for p in (run_dir / 'figures').iterdir())[0]}"
    elif pattern.startswith("trials/*/"):
        name = _trial_file(run_dir, pattern.removeprefix("trials/*/"))
    else:
        name = pattern
    victim = tmp_path / "victim"
    if name == "results.sqlite":
        shutil.copy(run_dir / name, victim)
    else:
        victim.write_bytes(b"the user's file")
    (run_dir / name).unlink(missing_ok=True)
    (run_dir / name).symlink_to(victim)
    return victim, victim.read_bytes()


@pytest.mark.parametrize("pattern", FILES)
@pytest.mark.parametrize("command", ["resume", "report"])
def test_a_planted_link_is_refused_and_its_target_untouched(finished, tmp_path, pattern, command):
    run_dir = Path(shutil.copytree(finished, tmp_path / "run"))
    victim, before = _plant(run_dir, pattern, tmp_path)
    args = ("run", "--resume", run_dir, "--no-progress") if command == "resume" else ("report", run_dir)
    message = one_line(cli(*args), 1)
    assert "symbolic link" in message
    assert victim.read_bytes() == before
    assert not Path(str(victim) + "-wal").exists()  # SQLite never opened the linked database


@pytest.mark.parametrize("folder", ["trials", "trials/*"])
def test_a_planted_trials_folder_link_is_refused(finished, tmp_path, folder):
    run_dir = Path(shutil.copytree(finished, tmp_path / "run"))
    name = _trial_file(run_dir, "")[:-1] if folder == "trials/*" else "trials"
    elsewhere = tmp_path / "elsewhere"
    shutil.move(run_dir / name, elsewhere)
    (run_dir / name).symlink_to(elsewhere)
    listing = sorted(p.name for p in elsewhere.rglob("*"))
    assert "symbolic link" in one_line(cli("run", "--resume", run_dir, "--no-progress"), 1)
    assert sorted(p.name for p in elsewhere.rglob("*")) == listing


def test_each_writer_refuses_a_link_at_its_own_name(tmp_path):
    """The per-write guards, without the folder check that runs before them."""
    from robustlr.runs.runlog import _LogFile
    from robustlr.training.checkpoint import Writer

    victim = tmp_path / "victim"
    victim.write_text("the user's file")
    for name in ("results.sqlite", "results.sqlite-wal", "results.sqlite-shm", "run.log",
                 "model.pt", "summary.json"):
        (tmp_path / name).symlink_to(victim)
    with pytest.raises(SymlinkRefused):
        Store(tmp_path / "results.sqlite")
    (tmp_path / "results.sqlite").unlink()
    with pytest.raises(SymlinkRefused):
        Store(tmp_path / "results.sqlite")  # its -wal is still a link
    with pytest.raises(SymlinkRefused):
        _LogFile(tmp_path / "run.log")
    model = models.build("mlp(hidden=[4])", input_shape=(1, 2, 2), num_classes=2, mean=[0.5],
                         std=[0.2])
    with pytest.raises(SymlinkRefused):
        models.save(model, tmp_path / "model.pt", spec="mlp(hidden=[4])", input_shape=(1, 2, 2),
                    num_classes=2, mean=[0.5], std=[0.2])
    with pytest.raises(SymlinkRefused):
        write_atomic(tmp_path / "summary.json", "[]")
    resume = tmp_path / "resume"
    resume.mkdir()
    (resume / ".epoch-00001.pt.tmp").symlink_to(victim)
    writer = Writer(resume)
    writer._write(1, memoryview(b"checkpoint bytes"))
    writer.wait()
    assert (resume / "epoch-00001.pt").read_bytes() == b"checkpoint bytes"
    (resume / "epoch-00002.pt").symlink_to(victim)
    writer._write(2, memoryview(b"more"))
    with pytest.raises(SymlinkRefused):
        writer.wait()
    assert victim.read_text() == "the user's file"
    logging.getLogger("robustlr").handlers.clear()


def test_a_resumed_run_still_writes_its_files(finished, tmp_path):
    run_dir = Path(shutil.copytree(finished, tmp_path / "run"))
    (run_dir / "report.html").unlink()
    assert cli("run", "--resume", run_dir, "--no-progress").exit_code == 0
    assert (run_dir / "report.html").is_file()
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM trials WHERE status = 'ok'").fetchone()[0] == 2
    assert torch.load(next(run_dir.glob("trials/*/model.pt")), weights_only=True)["metadata"]
