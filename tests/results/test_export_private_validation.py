"""What a run publishes under DP: a DP trial's scores on a private validation split are exact
statistics of private data that no epsilon covers, so summary.json, epochs.csv (and an MLflow
copy) leave them empty, while results.sqlite keeps them for the report's noisy LR choice; a
validation split declared public, and every non-DP trial, publish them as before."""

from __future__ import annotations

import csv
import json

import pytest
from helpers import tiny

from robustlr import experiment
from robustlr.results.export import VALIDATION_SCORES, published
from robustlr.results.store import load_summaries
from robustlr.runs.folder import run_in_folder

DP = "dp(noise_multiplier=1.0)"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    config = experiment.from_mapping(tiny(schedules=["constant"], regimes=["standard", DP],
                                          train={"epochs": 2, "batch_size": 32, "lr": 0.1}))
    return run_in_folder(config, out=out, show_progress=False)


def _by_regime(records):
    return {("dp" if r["regime"].startswith("dp") else "standard"): r for r in records}


def test_a_dp_trials_private_validation_scores_are_withheld_from_the_exports(run):
    exported = _by_regime(json.loads((run / "summary.json").read_text()))
    assert exported["dp"]["val_acc"] is None
    assert exported["standard"]["val_acc"] is not None
    with open(run / "epochs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    trial_of = {r["trial"]: r for r in exported.values()}
    dp_rows = [r for r in rows if trial_of[r["trial"]]["regime"].startswith("dp")]
    plain_rows = [r for r in rows if not trial_of[r["trial"]]["regime"].startswith("dp")]
    assert dp_rows and all(r["val_acc"] == "" and r["val_loss"] == "" for r in dp_rows)
    assert plain_rows and all(r["val_acc"] != "" for r in plain_rows)


def test_the_database_keeps_them_for_the_accounted_choice(run):
    stored = _by_regime(load_summaries(run))
    assert 0.0 <= stored["dp"]["val_acc"] <= 1.0


def test_a_public_validation_split_and_non_dp_trials_publish_their_scores():
    dp_private = {"trial": "a", "dp_guarantee": True, "public_validation": False,
                  "val_examples": 48, "val_acc": 0.5, "clean_acc": 0.6}
    dp_public = {**dp_private, "trial": "b", "public_validation": True}
    no_split = {**dp_private, "trial": "c", "val_examples": 0}
    standard = {"trial": "d", "public_validation": False, "val_examples": 48, "val_acc": 0.7}
    rows = [{"trial": t, "epoch": 1, "val_acc": 0.4, "val_loss": 1.0} for t in "abcd"]
    summaries, epochs = published([dp_private, dp_public, no_split, standard], rows)
    assert [s["val_acc"] for s in summaries] == [None, 0.5, 0.5, 0.7]
    assert summaries[0]["clean_acc"] == 0.6  # the test split is outside the private data
    assert [r["val_acc"] for r in epochs] == [None, 0.4, 0.4, 0.4]
    assert set(VALIDATION_SCORES) >= {"val_acc", "val_loss"}
