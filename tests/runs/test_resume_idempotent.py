"""--resume runs exactly the unfinished trials: finished ones are never executed, rewritten or
re-logged, and resuming a finished folder changes nothing but its log.

Trials are deterministic, so a resume that re-ran a finished trial would reproduce the same
numbers: only a spy on what a resume executes, or the rows' own timestamps, can see it."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from helpers import tiny, write_config

from robustlr import experiment
from robustlr.runs import tasks
from robustlr.runs.folder import run_in_folder

SCHEDULES = ["constant", "step(milestones=[0.5], gamma=0.1)", "cosine"]
UNCHANGED_ON_RESUME = ("run.log",)  # a resume appends to the log: the only file it may change


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run folder of three one-epoch trials (never modified: tests copy it)."""
    root = tmp_path_factory.mktemp("resume")
    config = tiny(name="resume", schedules=SCHEDULES, train={"epochs": 2})
    return run_in_folder(experiment.load(write_config(root / "c.yaml", config)), out=root / "run",
                   show_progress=False)


@pytest.fixture
def executed(monkeypatch) -> list[str]:
    """The trial ids a run hands to ``run_trial`` (in-process: one worker)."""
    seen: list[str] = []
    real = tasks.run_trial

    def spy(config, trial, **kwargs):
        seen.append(trial.id)
        return real(config, trial, **kwargs)

    monkeypatch.setattr(tasks, "run_trial", spy)
    return seen


def rows(run_dir: Path) -> dict[str, tuple]:
    """Every trial's database row (status, summary, error, update time) and epoch rows."""
    database = sqlite3.connect(run_dir / "results.sqlite")
    try:
        trials = database.execute("SELECT trial, status, summary, error, updated FROM trials")
        found = {t: (status, summary, error, updated) for t, status, summary, error, updated in trials}
        for trial in found:
            epochs = database.execute("SELECT epoch, record FROM epochs WHERE trial = ? "
                                      "ORDER BY epoch", (trial,)).fetchall()
            found[trial] += (tuple(epochs),)
        return found
    finally:
        database.close()


def lose(run_dir: Path, trials: list[str]) -> None:
    """As if the first session had been killed while ``trials`` were running."""
    database = sqlite3.connect(run_dir / "results.sqlite")
    with database:
        for trial in trials:
            database.execute("UPDATE trials SET status = 'running', summary = NULL WHERE trial = ?",
                             (trial,))
            database.execute("DELETE FROM epochs WHERE trial = ? AND epoch > 1", (trial,))
    database.close()


def files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name not in UNCHANGED_ON_RESUME
            and not p.name.startswith("results.sqlite")}


# one resume costs seconds (it rewrites the report), so the lost sets are chosen, not drawn:
# a finished trial between two lost ones, and a lost one between two finished ones
@pytest.mark.parametrize("lost", [{0, 2}, {1}])
def test_resume_executes_only_the_unfinished_trials_and_leaves_finished_rows_untouched(
        finished, executed, tmp_path, lost):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    ids = sorted(rows(finished))
    lost_ids = [ids[i] for i in sorted(lost)]
    lose(run_dir, lost_ids)
    before = rows(run_dir)
    executed.clear()

    run_in_folder(None, resume=run_dir, show_progress=False)

    assert sorted(executed) == lost_ids
    after = rows(run_dir)
    for trial in set(ids) - set(lost_ids):
        assert after[trial] == before[trial]  # same summary, epochs and update time
    original = rows(finished)
    for trial in lost_ids:  # re-run from scratch: the same numbers, one row per epoch
        assert after[trial][0] == "ok" and len(after[trial][4]) == 2
        assert [e for e, _ in after[trial][4]] == [1, 2]
        assert after[trial][1] is not None and original[trial][1] is not None


def test_resume_of_a_finished_folder_executes_nothing_and_changes_nothing(finished, executed,
                                                                          tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    before_files, before_rows = files(run_dir), rows(run_dir)
    log = (run_dir / "run.log").read_text()

    run_in_folder(None, resume=run_dir, show_progress=False)

    assert executed == []
    assert rows(run_dir) == before_rows
    after_files = files(run_dir)
    assert sorted(after_files) == sorted(before_files)
    changed = [name for name in before_files if after_files[name] != before_files[name]]
    assert changed == []
    assert (run_dir / "run.log").read_text().startswith(log)  # the log is only appended to


def test_report_rebuilt_from_the_database_equals_the_original(finished, tmp_path):
    from click.testing import CliRunner

    from robustlr.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    exports = ("summary.json", "epochs.csv", "report.md", "report.html")
    original = {name: (run_dir / name).read_bytes() for name in exports}
    for name in exports:
        (run_dir / name).unlink()
    result = CliRunner().invoke(main, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    for name in exports:
        assert (run_dir / name).read_bytes() == original[name], name
