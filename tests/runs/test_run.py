"""End-to-end runs of small grids: the run folder contract, per-step schedules,
reproducibility, divergence and failure handling, parallel workers."""

from __future__ import annotations

import csv
import json
import math

import pytest
from helpers import tiny

from robustlr import experiment, schedules
from robustlr.runs.folder import run_in_folder

SUMMARY_FIELDS = {"trial", "schedule", "regime", "lr_scale", "seed", "status", "epochs",
                  "clean_acc", "clean_acc_best", "train_seconds"}
EPOCH_FIELDS = ["trial", "epoch", "step", "lr", "train_loss", "val_acc", "test_acc"]
TIMING = {"train_seconds", "wall_seconds", "samples_per_second", "epoch_seconds", "eval_seconds"}


def run_tiny(tmp_path, name="run", workers=1, **overrides):
    config = experiment.from_mapping(tiny(**overrides))
    return run_in_folder(config, out=tmp_path / name, workers=workers, show_progress=False)


def read(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    with (run_dir / "epochs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return summary, rows


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def test_a_grid_leaves_the_documented_run_folder(tmp_path):
    run_dir = run_tiny(tmp_path, seeds=[0, 1])
    for name in ("config.yaml", "results.sqlite", "summary.json", "epochs.csv", "report.md",
                 "report.html", "run.log"):
        assert (run_dir / name).is_file(), name
    summary, rows = read(run_dir)
    assert len(summary) == 4 and len(rows) == 4 * 3
    for record in summary:
        assert SUMMARY_FIELDS <= set(record)
        assert record["status"] == "ok" and record["epochs"] == 3
        assert isinstance(record["clean_acc"], float) and 0 <= record["clean_acc"] <= 1
        assert isinstance(record["lr_scale"], float) and isinstance(record["seed"], int)
    assert list(rows[0])[:3] == ["trial", "epoch", "step"]  # the documented column order
    assert set(EPOCH_FIELDS) <= set(rows[0])
    assert summary[0]["schedule"] == "constant"  # the spec as written
    assert "data:image/png;base64," in (run_dir / "report.html").read_text()
    assert (run_dir / "figures" / "lr_curves.png").stat().st_size > 1000


def test_lr_recorded_each_epoch_is_the_schedule_at_the_last_step_taken(tmp_path):
    spec = "step(milestones=[0.5], gamma=0.1)"
    run_dir = run_tiny(tmp_path, schedules=[spec], train={"epochs": 4, "lr": 0.2})
    _, rows = read(run_dir)
    schedule = schedules.parse(spec)
    steps = [int(r["step"]) for r in rows]
    total = steps[-1]
    assert steps == [total // 4 * (i + 1) for i in range(4)]
    for row, step in zip(rows, steps):
        expected = 0.2 * schedule((step - 1) / total)
        assert float(row["lr"]) == pytest.approx(expected, rel=1e-9)
    # epoch 2's last step comes just before the milestone; epoch 3's after it
    assert float(rows[1]["lr"]) == pytest.approx(0.2)
    assert float(rows[2]["lr"]) == pytest.approx(0.2 * 0.1)


def test_the_same_seed_gives_identical_numbers(tmp_path):
    first, first_rows = read(run_tiny(tmp_path, "a"))
    second, second_rows = read(run_tiny(tmp_path, "b"))
    assert without_timing(first) == without_timing(second)
    assert without_timing(first_rows) == without_timing(second_rows)


def test_two_workers_give_the_numbers_of_one(tmp_path):
    serial, _ = read(run_tiny(tmp_path, "serial", workers=1))
    parallel, _ = read(run_tiny(tmp_path, "parallel", workers=2))
    assert without_timing(serial) == without_timing(parallel)


def test_a_diverging_trial_is_recorded_and_the_grid_goes_on(tmp_path):
    summary, _ = read(run_tiny(tmp_path, schedules=["constant"], lr_scales=[1.0, 1e12]))
    status = {r["lr_scale"]: r["status"] for r in summary}
    assert status == {1.0: "ok", 1e12: "diverged"}


def test_a_trial_that_raises_is_recorded_as_failed_with_its_error(tmp_path, monkeypatch):
    # (a model that cannot take the data is now refused before the run starts, so the trial
    # raises where training starts; one worker runs it in this process)
    from robustlr.training import trial

    def raise_at_start(*args, **kwargs):
        raise RuntimeError("the model cannot be built")

    monkeypatch.setattr(trial, "train_trial", raise_at_start)
    summary, rows = read(run_tiny(tmp_path))
    assert {r["status"] for r in summary} == {"failed"}
    assert all(r["error"] == "RuntimeError: the model cannot be built" for r in summary) and rows == []


def test_clean_acc_best_is_the_test_accuracy_at_the_best_validation_epoch(tmp_path):
    summary, rows = read(run_tiny(tmp_path, schedules=["constant"], train={"epochs": 4}))
    best = max(rows, key=lambda r: float(r["val_acc"]))
    assert summary[0]["best_epoch"] == int(best["epoch"])
    assert summary[0]["clean_acc_best"] == pytest.approx(float(best["test_acc"]))
    assert summary[0]["clean_acc"] == pytest.approx(float(rows[-1]["test_acc"]))
    assert math.isfinite(summary[0]["samples_per_second"])
