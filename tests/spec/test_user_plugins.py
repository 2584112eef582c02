"""A user's own training step and loss, named by import path in the config: ``train.loss``
replaces cross-entropy in the training loss of every regime, ``regimes: ["pkg.mod:MyRegime(...)"]``
is a Regime subclass built with the spec's arguments; both are checked before any run (a
typo, an unknown parameter, a factory that returns something else, a loss under dp)."""

from __future__ import annotations

import textwrap

import pytest
from helpers import tiny

from robustlr import config as config_module
from robustlr import data, experiment
from robustlr.grid import expand
from robustlr.training.loop import train_trial

USER_CODE = '''
import torch
from robustlr.regimes import Regime

def constant_loss(logits, y):
    return (logits * 0.0).sum() + 7.0

class Scaled(Regime):
    """Cross-entropy times `scale`."""
    def __init__(self, scale: float = 1.0):
        self.scale = scale
    def losses(self, model, x, y, *, progress):
        logits = model(x)
        return {"loss": self.scale * self.criterion(logits, y), "logits": logits}

def not_a_regime():
    return 42
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_plugins.py").write_text(textwrap.dedent(USER_CODE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "user_plugins"


def _train(config_mapping):
    config = experiment.from_mapping(config_mapping)
    trial = expand(config)[0]
    return trial, train_trial(config, trial, data.prepare(config.data, seed=0),
                              on_epoch=lambda row: None)


def test_the_user_loss_is_the_training_loss(user_module):
    _, summary = _train(tiny(schedules=["constant"],
                             train={"epochs": 1, "loss": f"{user_module}:constant_loss"}))
    assert summary["train_loss"] == pytest.approx(7.0)


def test_a_user_regime_is_built_with_its_arguments_and_trains(user_module):
    trial, summary = _train(tiny(schedules=["constant"], train={"epochs": 1},
                                 regimes=[f"{user_module}:Scaled(scale=0.0)"]))
    assert trial.regime == f"{user_module}:Scaled(scale=0.0)"
    assert summary["train_loss"] == 0.0 and summary["status"] == "ok"


@pytest.mark.parametrize("overrides, message", [
    ({"train": {"loss": "user_plugins:missing"}}, "train.loss: module 'user_plugins' has no attribute"),
    ({"train": {"loss": "user_plugins:constant_loss"}, "regimes": ["dp(noise_multiplier=1.0)"]},
     "train.loss cannot be used with the dp regime"),
    ({"regimes": ["user_plugins:Scaled(width=2)"]}, "unknown parameter 'width'; allowed: scale"),
    ({"regimes": ["user_plugins:not_a_regime"]}, "returned int, not a robustlr.regimes.Regime"),
])
def test_bad_user_plugins_are_config_errors(user_module, overrides, message):
    with pytest.raises(config_module.ConfigError, match=message):
        experiment.from_mapping(tiny(**overrides))
