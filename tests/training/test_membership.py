"""The membership-inference audit beside the accountant's epsilon, end to end through a run, and
the report's privacy section; the slow test is issue 4's accuracy acceptance on digits."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny
from torch import nn

from robustlr import experiment
from robustlr.privacy.audit import audit
from robustlr.results import report
from robustlr.results.report.document import Document
from robustlr.results.report.privacy import privacy_section
from robustlr.runs.folder import run_in_folder

# Overlapping Gaussian clusters: a non-private MLP memorises its 360 training points (loss ~0)
# while held-out points stay hard, so the loss-threshold attack separates them clearly.
HARD = {"name": "synthetic", "val_fraction": 0.2, "test_fraction": 0.2,
        "synthetic": {"num_examples": 600, "num_classes": 10, "shape": [1, 8, 8], "noise": 0.8}}
SMALL_EPSILON = "dp(target_epsilon=0.5, accountant=rdp)"
CAPPED = "dp(noise_multiplier=1.5, max_epsilon=2, accountant=rdp)"  # runs out near epoch 7


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    config = experiment.from_mapping(tiny(
        data=HARD, model={"name": "mlp", "hidden": [128]},
        train={"epochs": 15, "batch_size": 24, "lr": 0.1, "momentum": 0.9},
        schedules=["constant"], evaluation={"membership": True},
        grids=[{"regimes": ["standard"]},
               {"regimes": [SMALL_EPSILON], "lr_scales": [0.1],
                "schedules": ["constant", "cosine"]},
               {"regimes": [CAPPED], "lr_scales": [0.1]}]))
    run_dir = run_in_folder(config, out=tmp_path_factory.mktemp("audit") / "run", show_progress=False)
    summaries = json.loads((run_dir / "summary.json").read_text())
    return run_dir, {(r["regime"], r["schedule"]): r for r in summaries}


def test_the_audit_separates_a_memorising_model_from_a_private_one(audited):
    _, by_key = audited
    standard = by_key[("standard", "constant")]
    assert standard["train_loss"] < 0.01 and standard["mia_auc"] > 0.8
    assert standard["mia_members"] == 120  # as many members as there are non-members
    private = by_key[(SMALL_EPSILON, "constant")]
    assert private["epsilon"] <= 0.5
    assert abs(private["mia_auc"] - 0.5) < 0.1


def test_the_empirical_lower_bound_stays_below_the_accountants_epsilon(audited):
    _, by_key = audited
    assert by_key[("standard", "constant")]["epsilon_lower_bound"] > 0  # leakage proven
    private = [r for (regime, _), r in by_key.items() if regime != "standard"]
    assert len(private) == 3
    for record in private:
        assert 0 <= record["epsilon_lower_bound"] <= record["epsilon"] <= 2.0


def test_art_attack_is_at_chance_on_a_model_that_never_saw_the_data(digits_tensors):
    # members and non-members are both unseen: any AUC far from 0.5 is an artefact of the
    # audit (e.g. scoring the attack on points it was fitted on)
    x, y, _, _ = digits_tensors
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    result = audit(model, (x[:200], y[:200]), (x[200:400], y[200:400]), delta=1e-5, seed=0)
    assert abs(result.auc - 0.5) < 0.1
    assert abs(result.art_auc - 0.5) < 0.15


def test_the_report_has_the_privacy_section(audited):
    assert privacy_section in report.SECTIONS
    run_dir, by_key = audited
    text = (run_dir / "report.md").read_text()
    for heading in ("Differential privacy", "Accuracy against epsilon", "Privacy budget per epoch",
                    "Schedules ranked at equal epsilon", "Trials stopped by the privacy budget",
                    "Membership-inference audit"):
        assert f"## {heading}\n" in text
    assert "| regime | schedule | LR scale | seeds | ε (accountant) | MIA AUC |" in text
    assert "| ε = 0.5 | 1 |" in text and "| ε = 2 | 1 |" in text  # one ranking per level
    capped = by_key[(CAPPED, "constant")]
    assert capped["status"] == "budget_exhausted" and 1 < capped["epochs"] < 15
    assert f"| {capped['trial']} | constant | {CAPPED} |" in text
    for figure in ("privacy_accuracy_vs_epsilon", "privacy_epsilon_per_epoch"):
        assert (run_dir / "figures" / f"{figure}.png").stat().st_size > 0


def test_the_privacy_section_skips_itself_without_private_or_audited_trials():
    document = Document("t")
    privacy_section(document, [{"trial": "a", "schedule": "constant", "regime": "standard",
                                "lr_scale": 1.0, "seed": 0, "clean_acc": 0.9}], [])
    assert document.blocks == []


@pytest.mark.slow
def test_digits_at_epsilon_3_reaches_85_percent(tmp_path):
    """Issue 4's acceptance, with the default audit's model and training settings."""
    config = experiment.from_mapping({
        "name": "dp-digits", "data": {"name": "digits", "val_fraction": 0.15, "test_fraction": 0.2},
        "model": {"name": "cnn"},
        "train": {"epochs": 15, "batch_size": 64, "optimizer": "sgd", "lr": 0.05,
                  "momentum": 0.9, "weight_decay": 5.0e-4},
        "schedules": ["cosine(warmup=0.05)"],
        "regimes": [{"name": "dp", "target_epsilon": 3.0, "delta": 1.0e-5}]})
    run_dir = run_in_folder(config, out=tmp_path / "run", show_progress=False)
    (record,) = json.loads((run_dir / "summary.json").read_text())
    assert record["status"] == "ok" and record["epsilon"] <= 3.0
    assert record["clean_acc"] >= 0.85
