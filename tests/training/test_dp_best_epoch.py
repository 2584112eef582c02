"""The best epoch under DP: chosen exactly on the validation split, it is released only when
that split is public (or absent: then the test split chose it); on a private split the fields
it chose are withheld and best.pt is a config error (docs/privacy-ledger.md)."""

from __future__ import annotations

import pytest
from helpers import tiny

from robustlr import config as config_module
from robustlr import data, experiment
from robustlr.grid import expand
from robustlr.training.loop import train_trial

DP = "dp(noise_multiplier=1.0)"


def summary_of(**overrides):
    config = experiment.from_mapping(tiny(schedules=["constant"], **overrides))
    bundle = data.prepare(config.data, seed=0)
    (trial,) = expand(config)
    return train_trial(config, trial, bundle, on_epoch=lambda row: None), bundle


@pytest.mark.parametrize("regime, public, released", [
    (DP, False, False), (DP, True, True), ("standard", False, True)])
def test_the_best_epoch_is_released_under_dp_only_from_a_public_validation_split(
        regime, public, released):
    summary, bundle = summary_of(regimes=[regime], data={"public_validation": public})
    assert summary["val_examples"] == len(bundle.val[1]) > 0
    assert summary["public_validation"] is public
    if released:
        assert summary["best_epoch"] in (1, 2, 3) and summary["clean_acc_best"] is not None
    else:
        assert summary["best_epoch"] is None and summary["clean_acc_best"] is None
        assert summary["clean_acc"] is not None  # the final model is DP-SGD's own


def test_without_a_validation_split_the_test_split_chooses_and_dp_keeps_it():
    summary, _ = summary_of(regimes=[DP], data={"val_fraction": 0.0})
    assert summary["val_examples"] == 0 and summary["best_epoch"] in (1, 2, 3)


@pytest.mark.parametrize("keep", ["best", "both"])
def test_best_pt_under_dp_needs_a_public_validation_split(keep):
    with pytest.raises(config_module.ConfigError,
                       match=f"train.checkpoints: {keep} under the dp regime picks an epoch"):
        experiment.from_mapping(tiny(regimes=["standard", DP], train={"checkpoints": keep}))
    experiment.from_mapping(tiny(regimes=[DP], train={"checkpoints": keep},
                                    data={"public_validation": True}))
    experiment.from_mapping(tiny(regimes=["standard"], train={"checkpoints": keep}))
