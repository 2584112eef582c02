"""`robustlr run` tells the truth in its exit code: 1 when any trial failed, with a summary
line that counts them and points to run.log; --allow-failures for exploratory grids."""

from __future__ import annotations

from click.testing import CliRunner
from helpers import tiny, write_config

from robustlr.cli import main

CONFIG = tiny(schedules=["constant"], train={"epochs": 1})


def _boom(*args, **kwargs):
    raise RuntimeError("CUDA error: no kernel image is available")


def test_a_run_whose_trials_failed_exits_1_and_says_how_many(tmp_path, monkeypatch):
    """Issue 12: `device: cuda` on a CPU machine failed every trial and `run` exited 0,
    printing "report:" as if all was well. (A config asking for a missing device is now
    refused up front, so the trial is made to fail inside training.)"""
    monkeypatch.setattr("robustlr.training.trial.train_trial", _boom)  # forked workers see it
    config = write_config(tmp_path / "c.yaml", CONFIG)
    result = CliRunner().invoke(main, ["run", str(config), "--out", str(tmp_path / "run"),
                                       "--no-progress", "--workers", "1"])
    assert result.exit_code == 1, result.output
    assert "trials: 0 of 1 finished, 1 failed (errors in" in result.output
    assert "1 of 1 trials failed; see" in result.output and "run.log" in result.output
    assert "no kernel image" in (tmp_path / "run" / "run.log").read_text()

    allowed = CliRunner().invoke(main, ["run", str(config), "--out", str(tmp_path / "again"),
                                        "--no-progress", "--workers", "1", "--allow-failures"])
    assert allowed.exit_code == 0, allowed.output
    assert "1 failed" in allowed.output
