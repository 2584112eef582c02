"""A DP trial's privacy ledger: ``epsilon`` is the total of its entries (data statistics, a
filter's scope, DP-SGD), the cap and delta are on that total, shuffled batches carry no
guarantee, and a filter's pass is stated as out of scope only when the user asked for it."""

from __future__ import annotations

import dataclasses
import math

import pytest
from helpers import tiny

from robustlr import data, experiment
from robustlr.grid import expand
from robustlr.privacy.ledger import Entry, Ledger
from robustlr.regimes.dp_ledger import filter_entry
from robustlr.training import poison_stage
from robustlr.training.loop import train_trial

GROUP_CNN = {"name": "cnn", "norm": "group", "width": 8, "hidden": 16}
IMAGES = {"synthetic": {"num_examples": 240, "num_classes": 3, "shape": [1, 8, 8]}}
NORMALIZATION = Entry(name="normalization", mechanism="gaussian", epsilon=0.5, delta=1e-4,
                      detail={"sigma": 2.0})


def _run(regime, *, epochs=3, ledger=(), rows=None, **overrides):
    config = experiment.from_mapping(tiny(
        data=IMAGES, model=GROUP_CNN, schedules=["constant"], regimes=[regime],
        train={"epochs": epochs, "batch_size": 24}, **overrides))
    (trial,) = expand(config)
    bundle = dataclasses.replace(data.prepare(config.data, seed=0), ledger=tuple(ledger))
    summary = train_trial(config, trial, bundle,
                          on_epoch=(rows.append if rows is not None else lambda r: None))
    return summary, bundle


def test_epsilon_is_the_total_of_the_ledger_and_epsilon_training_dp_sgd_alone():
    rows: list[dict] = []
    summary, bundle = _run("dp(noise_multiplier=1.0)", epochs=2, ledger=[NORMALIZATION],
                           rows=rows)
    ledger = Ledger.from_records(summary["privacy_ledger"])
    names = [e.name for e in ledger.entries]  # between them: facts the data layer names public
    assert names[0] == "normalization" and names[-1] == "dp_sgd" and names.count("dp_sgd") == 1
    training = ledger.entries[-1]
    assert training.mechanism == "subsampled_gaussian" and training.epsilon > 0
    assert summary["epsilon_training"] == training.epsilon
    assert summary["epsilon"] == pytest.approx(0.5 + training.epsilon, rel=1e-12)
    assert summary["epsilon"] == pytest.approx(math.fsum(e.epsilon for e in ledger.entries))
    n = len(bundle.train[1])
    assert summary["delta"] == pytest.approx(0.1 / n)  # the trial's delta, split:
    assert training.delta == pytest.approx(0.1 / n - 1e-4)  # DP-SGD gets what is left
    assert training.detail["dataset_size"] == n and training.detail["steps"] == summary["dp_steps"]
    assert training.detail["noise"] == 1.0 and training.detail["sample_rate"] == 24 / n
    assert summary["dp_guarantee"] is True and summary["privacy_scope"] == "training_data"
    for row in rows:  # per epoch: the total so far, DP-SGD's share beside it
        assert row["epsilon"] == pytest.approx(0.5 + row["epsilon_training"])
    assert rows[-1]["epsilon_training"] == summary["epsilon_training"]


def test_a_target_on_the_total_calibrates_dp_sgd_to_what_the_statistics_leave():
    summary, _ = _run("dp(target_epsilon=2.0)", ledger=[NORMALIZATION])
    assert summary["target_epsilon"] == 2.0 and summary["max_epsilon"] == 2.0
    assert 1.4 <= summary["epsilon_training"] <= 1.5  # calibrated to land just under 2 - 0.5
    assert summary["epsilon"] <= 2.0
    training = Ledger.from_records(summary["privacy_ledger"]).entries[-1]
    assert training.detail["cap"] == pytest.approx(1.5)


def test_a_cap_on_the_total_stops_dp_sgd_at_what_the_statistics_leave():
    rows: list[dict] = []
    summary, _ = _run({"name": "dp", "noise_multiplier": 1.0, "max_epsilon": 2.0}, epochs=8,
                      ledger=[NORMALIZATION], rows=rows)
    assert summary["status"] == "budget_exhausted"
    assert summary["epsilon_training"] <= 1.5 and summary["epsilon"] <= 2.0
    assert all(r["epsilon"] <= 2.0 and r["epsilon_training"] <= 1.5 for r in rows)


def test_shuffled_batches_report_no_guarantee_rather_than_the_poisson_figure():
    summary, _ = _run("dp(noise_multiplier=1.0, poisson=false)", epochs=1)
    assert summary["dp_steps"] > 0
    assert summary["epsilon"] == math.inf and summary["epsilon_training"] == math.inf
    assert summary["dp_guarantee"] is False
    *before, training = Ledger.from_records(summary["privacy_ledger"]).entries
    assert Ledger(tuple(before)).guaranteed  # the shuffled batches alone remove the guarantee
    assert training.mechanism == "shuffled_gaussian" and training.epsilon == math.inf
    assert summary["privacy_ledger"][-1]["epsilon"] is None  # JSON has no infinity


def test_a_filter_under_scope_after_filter_is_stated_as_out_of_scope_in_the_ledger():
    config = experiment.from_mapping(tiny(
        data=IMAGES, model=GROUP_CNN, schedules=["constant"],
        regimes=["dp(noise_multiplier=1.0, scope=after_filter)"],
        poisoning=["badnets(rate=0.1, target=0, size=2)"], filter=["spectral"],
        train={"epochs": 1, "batch_size": 24}, filtering={"epochs": 1}))
    (trial,) = expand(config)
    stage = poison_stage.prepare(config, trial, data.prepare(config.data, seed=0))
    summary = train_trial(config, trial, stage.bundle, on_epoch=lambda r: None)
    entries = {e.name: e for e in Ledger.from_records(summary["privacy_ledger"]).entries}
    filtered, training = entries["filter"], entries["dp_sgd"]
    kept = len(stage.bundle.train[1])
    assert filtered.name == "filter" and filtered.mechanism == "out_of_scope"
    assert filtered.detail["scope"] == "after_filter" and filtered.detail["kept"] == kept
    assert filtered.detail["examples"] > kept  # the filter removed some
    assert training.detail["dataset_size"] == kept  # sample rate and delta of the kept set
    assert summary["privacy_scope"] == "after_filter" and summary["dp_guarantee"] is True
    assert summary["epsilon"] == pytest.approx(math.fsum(e.epsilon for e in entries.values()))


def test_a_filter_without_the_scope_is_refused_when_the_trial_starts():
    config = experiment.from_mapping(tiny(
        data=IMAGES, model=GROUP_CNN, schedules=["constant"], regimes=["dp(noise_multiplier=1.0)"],
        train={"epochs": 1, "batch_size": 24}))
    (trial,) = expand(config)
    bundle = data.prepare(config.data, seed=0)
    bundle = dataclasses.replace(bundle, ledger=(filter_entry("spectral"),))
    with pytest.raises(ValueError, match="regime 'dp': the poison filter 'spectral' trains without privacy"):
        train_trial(config, trial, bundle, on_epoch=lambda r: None)


def test_a_standard_trial_has_no_ledger_fields():
    summary, _ = _run("standard", epochs=1, ledger=[NORMALIZATION])
    assert not {"epsilon", "epsilon_training", "privacy_ledger"} & set(summary)
