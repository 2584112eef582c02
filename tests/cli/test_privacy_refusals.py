"""What no epsilon can cover is refused on the command line: one line, exit 2, no run folder
(a DP regime behind a poison filter without its scope, shuffled batches under a cap or target,
a cap the privacy ledger's entries before training already spend)."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner
from helpers import tiny, write_config

from robustlr import experiment
from robustlr.cli import main
from robustlr.config import from_mapping
from robustlr.privacy.ledger import Entry
from robustlr.training import preflight
from robustlr.training.ledger import planned_entries
from robustlr.training.trial import prepare_data


def _refused(tmp_path, config: dict) -> str:
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", str(write_config(tmp_path / "c.yaml", config)),
                                       "--out", str(out), "--no-progress"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("robustlr: error: "), result.output
    assert not out.exists()
    return lines[0]


@pytest.mark.parametrize("regime, field", [
    ("dp(noise_multiplier=1.0, max_epsilon=3, poisson=false)", "max_epsilon"),
    ("dp(target_epsilon=3, poisson=false)", "target_epsilon"),
])
def test_shuffled_batches_under_a_cap_or_target_are_refused(tmp_path, regime, field):
    message = _refused(tmp_path, tiny(regimes=["standard", regime]))
    assert "regimes[1]" in message and field in message
    assert "poisson=false cannot be used with" in message and "Chua et al. 2024" in message


def test_a_dp_regime_behind_a_poison_filter_without_its_scope_is_refused(tmp_path):
    config = tiny(regimes=["standard", "dp(noise_multiplier=1.0)"],
                  poisoning=["badnets(rate=0.1)"], filter=["none", "spectral"])
    message = _refused(tmp_path, config)
    assert "regimes[1]: dp: the poison filter 'spectral' trains without privacy" in message
    assert "dp(scope=after_filter)" in message


def test_a_cap_the_entries_before_training_already_spend_is_refused(tmp_path, monkeypatch):
    prepare = preflight.prepare_data

    def with_statistics(data_config, seed):  # what DP normalization statistics would spend
        spent = Entry(name="normalization", mechanism="gaussian", epsilon=2.5)
        return dataclasses.replace(prepare(data_config, seed), ledger=(spent,))

    monkeypatch.setattr(preflight, "prepare_data", with_statistics)
    message = _refused(tmp_path, tiny(regimes=["dp(noise_multiplier=1.0, max_epsilon=2)"]))
    assert "regimes[0]: dp: max_epsilon 2 is on the trial's total" in message
    assert "already spend 2.5 of it (normalization 2.5)" in message


def test_a_cap_whose_remainder_allows_no_step_names_what_it_leaves(tmp_path, monkeypatch):
    prepare = preflight.prepare_data

    def with_statistics(data_config, seed):
        spent = Entry(name="normalization", mechanism="gaussian", epsilon=1.9)
        return dataclasses.replace(prepare(data_config, seed), ledger=(spent,))

    monkeypatch.setattr(preflight, "prepare_data", with_statistics)
    message = _refused(tmp_path, tiny(regimes=["dp(noise_multiplier=0.8, max_epsilon=2)"]))
    assert "max_epsilon 2 allows no step (it leaves DP-SGD 0.1)" in message


def test_a_cap_the_planned_private_lr_choice_already_spends_is_refused(tmp_path):
    """The report's noisy LR choice on private validation (report.selection_epsilon) is
    reserved in each DP trial's ledger, so a cap it alone spends cannot be met."""
    config = tiny(regimes=["dp(noise_multiplier=1.0, max_epsilon=0.5)"], lr_scales=[0.5, 1.0],
                  report={"select_lr": "validation", "selection_epsilon": 0.8})
    message = _refused(tmp_path, config)
    assert "regimes[0]: dp: max_epsilon 0.5 is on the trial's total" in message
    assert "already spend 0.8 of it (lr_choice 0.8)" in message


def test_a_public_validation_split_makes_the_planned_lr_choice_free(tmp_path):
    config = tiny(regimes=["dp(noise_multiplier=1.0, max_epsilon=0.5)"], lr_scales=[0.5, 1.0],
                  report={"select_lr": "validation", "selection_epsilon": 0.8})
    config["data"]["public_validation"] = True
    loaded = from_mapping(config)
    entries = planned_entries(loaded, prepare_data(loaded.data, 0), regime=loaded.regimes[0])
    (entry,) = [e for e in entries if e.name == "lr_choice"]
    assert entry.name == "lr_choice" and entry.mechanism == "public" and entry.epsilon == 0


@pytest.mark.parametrize("schedule", ["plateau(patience=1)", "torch:ReduceLROnPlateau(patience=1)"])
def test_a_metric_driven_schedule_under_dp_on_private_validation_is_refused(tmp_path, schedule):
    """plateau's LR reductions read the validation loss each epoch: under dp on a private split
    no epsilon covers them (and without a split they never fire)."""
    config = tiny(regimes=["standard", "dp(noise_multiplier=1.0)"],
                  schedules=["constant", schedule])
    message = _refused(tmp_path, config)
    assert message.startswith("robustlr: error: schedules[1]: a metric-driven schedule under the "
                              "dp regime reads the private validation loss")
    assert "data.public_validation: true" in message


def test_a_metric_driven_schedule_is_allowed_on_a_public_split_or_without_dp():
    public = tiny(regimes=["dp(noise_multiplier=1.0)"], schedules=["plateau"])
    public["data"].update(public_validation=True, val_fraction=0.2)
    experiment.from_mapping(public)
    experiment.from_mapping(tiny(regimes=["standard"], schedules=["plateau"]))
    # a grid whose dp arm has no metric-driven schedule is fine beside a plateau arm
    experiment.from_mapping(tiny(regimes=["standard"], schedules=["plateau"],
                                 grids=[{}, {"regimes": ["dp(noise_multiplier=1.0)"],
                                             "schedules": ["constant"]}]))
