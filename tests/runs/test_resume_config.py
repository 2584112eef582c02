"""A resume never mixes configurations: the run folder records its config's fingerprint and
``--resume`` refuses an edited ``config.yaml`` naming the changed keys; trial ids cover every
key that changes a trial's result (train.*, model, data, evaluation)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from robustlr import experiment
from robustlr.grid import expand
from robustlr.runs.folder import run_in_folder
from tests.helpers import cli, one_line, tiny


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    config = experiment.from_mapping(tiny(train={"epochs": 1}))
    return run_in_folder(config, out=tmp_path_factory.mktemp("resume") / "run", show_progress=False)


def _dump(run_dir: Path) -> list[tuple]:
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        return db.execute("SELECT trial, status, summary FROM trials ORDER BY trial").fetchall()


def _edit(run_dir: Path, change) -> None:
    path = run_dir / "config.yaml"
    raw = yaml.safe_load(path.read_text())
    change(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def test_an_edited_config_is_refused_on_resume_naming_the_changed_keys(finished, tmp_path):
    run_dir = Path(shutil.copytree(finished, tmp_path / "run"))
    before = _dump(run_dir)

    def lr_and_a_schedule(raw):
        raw["train"]["lr"] = 5.0
        raw["schedules"].append("cosine")
    _edit(run_dir, lr_and_a_schedule)
    message = one_line(cli("run", "--resume", run_dir, "--no-progress"), 2)
    assert "no longer matches" in message and "schedules" in message and "train.lr" in message
    assert _dump(run_dir) == before


def test_an_unchanged_config_resumes_and_a_report_edit_is_allowed(finished, tmp_path):
    run_dir = Path(shutil.copytree(finished, tmp_path / "run"))
    _edit(run_dir, lambda raw: raw["report"].update({"rank_by": "clean_acc"}))
    result = cli("run", "--resume", run_dir, "--no-progress")
    assert result.exit_code == 0, result.output


def test_a_folder_without_a_fingerprint_is_refused(finished, tmp_path):
    run_dir = Path(shutil.copytree(finished, tmp_path / "run"))
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        db.execute("DELETE FROM meta WHERE key LIKE 'config%'")
    assert "no config fingerprint" in one_line(cli("run", "--resume", run_dir, "--no-progress"), 2)
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        db.execute("INSERT INTO meta VALUES ('config', '{}'), ('config_sha1', 'x')")
    assert "was edited" in one_line(cli("run", "--resume", run_dir, "--no-progress"), 2)


def _ids(**overrides) -> set[str]:
    return {trial.id for trial in expand(experiment.from_mapping(tiny(**overrides)))}


@pytest.mark.parametrize("change", [
    {"train": {"lr": 5.0}}, {"train": {"epochs": 4}}, {"train": {"label_smoothing": 0.1}},
    {"train": {"optimizer": "adam"}}, {"model": {"name": "mlp", "hidden": [32]}},
    {"model": "cnn"}, {"data": {"limit": 100}}, {"evaluation": {"subset": 50}},
    {"evaluation": {"attack": "fgsm(eps=0.1)"}}, {"filtering": {"epochs": 2}},
])
def test_trial_ids_cover_what_changes_a_result(change):
    assert _ids(**change).isdisjoint(_ids())


def test_trial_ids_ignore_what_only_decides_what_is_saved():
    assert _ids(train={"checkpoints": "both", "checkpoint_every": 1}) == _ids()
    assert _ids(report={"rank_by": "clean_acc"}) == _ids()


def test_the_summary_names_the_model(finished):
    summaries = json.loads((finished / "summary.json").read_text())
    assert {s["model"] for s in summaries} == {"mlp(hidden=[16])"}
    assert all(len(s["setup_hash"]) == 12 for s in summaries)
