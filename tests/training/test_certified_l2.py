"""Certified and empirical L2 robustness end to end: the gaussian regime trains on noisy
inputs, evaluation.certify writes the certified-accuracy fields, pgd_at and trades train
under norm l2, and L2 PGD and AutoAttack-L2 evaluate them; bad certify settings are one-line
config errors."""

from __future__ import annotations

import types

import pytest
import torch
from helpers import tiny
from torch import nn

from robustlr import config as config_module
from robustlr import data, experiment
from robustlr.grid import expand
from robustlr.regimes import REGIMES
from robustlr.training.loop import train_trial
from robustlr.training.probes import build_probes

CERTIFY = {"sigma": 0.25, "n0": 10, "n": 100, "alpha": 0.01, "subset": 16}


def run(overrides: dict) -> dict[str, dict]:
    config = experiment.from_mapping(tiny(**overrides))
    bundle = data.prepare(config.data, seed=0)
    return {trial.regime: train_trial(config, trial, bundle, on_epoch=lambda row: None,
                                      probes=build_probes(config, trial, bundle))
            for trial in expand(config)}


def test_gaussian_regime_trains_on_noisy_inputs():
    regime = REGIMES.build("gaussian(sigma=0.5)")
    setup = types.SimpleNamespace(generator=torch.Generator().manual_seed(3), device=torch.device("cpu"),
                                  world=types.SimpleNamespace(rank=0))
    regime.prepare(setup)
    replay = torch.Generator()
    replay.set_state(regime.generator.get_state())
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    loss = regime.losses(model, x, y, progress=0.0)["loss"]
    expected = nn.functional.cross_entropy(model(x + 0.5 * torch.randn(x.shape, generator=replay)), y)
    assert torch.allclose(loss, expected)
    assert not torch.allclose(loss, nn.functional.cross_entropy(model(x), y))


def test_certify_fields_per_trial():
    results = run({"schedules": ["constant"], "regimes": ["gaussian(sigma=0.25)", "standard"],
                   "evaluation": {"certify": CERTIFY}})
    for regime, summary in results.items():
        curve = [summary[f"certified_acc_r{r}"] for r in ("0", "0_25", "0_5", "0_75", "1")]
        assert curve == sorted(curve, reverse=True) and 0 <= curve[-1] <= curve[0] <= 1
        assert 0 <= summary["avg_certified_radius"] <= 1.5
        assert summary["certify_examples"] == 16 and summary["certify_sigma"] == 0.25
        assert all(0 <= summary[f"empirical_l2_acc_r{r}"] <= 1 for r in ("0_25", "0_5", "0_75", "1"))
        assert ("certify_train_sigma" in summary) == regime.startswith("gaussian")


@pytest.mark.parametrize("bad, field", [({"sigma": 0}, "evaluation.certify.sigma"),
                                        ({"n0": 100, "n": 100}, "evaluation.certify.n0"),
                                        ({"alpha": 1.5}, "evaluation.certify.alpha")])
def test_bad_certify_settings_are_one_line_errors(bad, field):
    with pytest.raises(config_module.ConfigError, match=field) as caught:
        experiment.from_mapping(tiny(evaluation={"certify": {**CERTIFY, **bad}}))
    assert "\n" not in str(caught.value)


def test_l2_training_and_l2_evaluation(monkeypatch):
    from robustlr.attacks import AutoAttack

    build = AutoAttack.reference

    def quick(self, *args):  # the full protocol is the slow tests' job
        reference = build(self, *args)
        reference.apgd.n_iter = reference.apgd_targeted.n_iter = reference.fab.n_iter = 3
        reference.square.n_queries = 20
        return reference

    monkeypatch.setattr(AutoAttack, "reference", quick)
    four_classes = {"name": "synthetic", "val_fraction": 0.2, "test_fraction": 0.2,
                    "synthetic": {"num_examples": 240, "num_classes": 4, "shape": [1, 6, 6]}}
    results = run({"data": four_classes, "schedules": ["constant"],
                   "regimes": ["pgd_at(eps=0.5, norm=l2, steps=3)", "trades(eps=0.5, norm=l2, steps=3)"],
                   "evaluation": {"attack": "pgd(eps=0.5, norm=l2, steps=5)",
                                  "final": ["pgd(eps=0.5, norm=l2, steps=20)",
                                            "autoattack(eps=0.5, norm=l2)"]}})
    assert set(results) == {"pgd_at(eps=0.5, norm=l2, steps=3)", "trades(eps=0.5, norm=l2, steps=3)"}
    for summary in results.values():
        stages = [summary[f"autoattack_{s}_acc"] for s in ("apgd_ce", "apgd_t", "fab_t", "square")]
        assert stages == sorted(stages, reverse=True)
        assert summary["robust_acc"] == summary["autoattack_acc"] == stages[-1]
        assert stages[0] < summary["clean_acc"]  # APGD-CE at L2 0.5 flips some points


def test_trades_l2_stays_in_the_l2_ball():
    regime = REGIMES.build("trades(eps=0.3, norm=l2, steps=5)")
    regime.generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(8, 1, 4, 4)
    x_adv = regime.perturb(model, x, torch.zeros(8, dtype=torch.long), 0.3)
    lengths = (x_adv - x).flatten(1).norm(dim=1)
    assert lengths.max() <= 0.3 + 1e-5 and lengths.min() > 0.2  # it moves, but only that far
    assert (x_adv - x).abs().max() > 0.3 / 4  # not the L-inf step of the default norm


def test_a_gaussian_grid_over_three_schedules_reports_certified_curves(tmp_path):
    import json

    from robustlr.runs.folder import run_in_folder

    config = experiment.from_mapping(tiny(
        schedules=["constant", "cosine", "onecycle"], regimes=["gaussian(sigma=0.25)"],
        train={"epochs": 2}, evaluation={"certify": CERTIFY}))
    run_dir = run_in_folder(config, out=tmp_path / "run", workers=1, show_progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary) == 3 and all("certified_acc_r0_5" in r for r in summary)
    report = (run_dir / "report.md").read_text()
    assert "Certified robustness" in report and (run_dir / "figures" / "certified_accuracy.png").is_file()
