"""The notebook API: ``robustlr.run`` on a tiny grid, then ``robustlr.open`` reads the same
results as DataFrames: the trials are the database's summaries, the epochs its rows, the
verdicts the report's ranking, and bad input is one InputError naming the argument."""

from __future__ import annotations

import json

import pytest
from helpers import tiny

import robustlr
from robustlr.errors import InputError


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    return robustlr.run(tiny(train={"epochs": 2}), out=out, workers=1, progress=False,
                        save_models=True)


def test_run_returns_the_folder_and_open_reads_the_same_trials(finished):
    reopened = robustlr.open(finished.path)
    exported = json.loads((finished.path / "summary.json").read_text())
    trials = reopened.trials
    assert list(trials["trial"]) == [r["trial"] for r in exported]
    assert list(trials["clean_acc"]) == [r["clean_acc"] for r in exported]
    assert set(trials["status"]) == {"ok"}


def test_epochs_hold_every_trial_and_epoch(finished):
    epochs = finished.epochs
    assert len(epochs) == 2 * 2  # two schedules, two epochs each
    assert sorted(epochs.groupby("trial")["epoch"].apply(list).tolist()) == [[1, 2], [1, 2]]


def test_verdicts_rank_every_schedule_of_the_threat_model(finished):
    verdicts = finished.verdicts
    assert list(verdicts["rank"]) == [1, 2]
    assert set(verdicts["schedule"]) == {"constant", "step(milestones=[0.5], gamma=0.1)"}
    leader = verdicts.iloc[0]
    best = finished.trials.sort_values("clean_acc", ascending=False).iloc[0]
    assert leader["schedule"] == best["schedule"] and leader["mean"] == best["clean_acc"]


def test_a_run_without_dp_has_an_empty_ledger(finished):
    assert finished.ledger.empty and "epsilon" in finished.ledger.columns


def test_the_saved_model_loads_and_gives_the_recorded_accuracy(finished):
    from robustlr import data

    record = finished.trials.iloc[0]
    model = finished.model(record["trial"])
    config = robustlr.api._config(tiny()).data
    x, y = data.load(config.name, split="test", seed=int(record["seed"]),
                     **config.model_dump(exclude={"name"}))
    accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy == pytest.approx(record["clean_acc"], abs=1e-6)


def test_report_rewrites_the_html(finished):
    html = finished.path / "report.html"
    html.unlink()
    assert finished.report() == html and html.is_file()


@pytest.mark.parametrize("call, field", [
    (lambda tmp: robustlr.open(tmp), "run_dir"),
    (lambda tmp: robustlr.run(42, out=tmp / "x"), "config"),
])
def test_bad_input_is_one_input_error_naming_the_argument(tmp_path, call, field):
    with pytest.raises(InputError, match=f"^{field}: "):
        call(tmp_path)


def test_model_names_the_checkpoints_it_knows(finished):
    with pytest.raises(InputError, match="^which: must be one of model, best, last"):
        finished.model(finished.trials.iloc[0]["trial"], which="final")
