"""Poisoning and filtering as grid dimensions: summary and epoch fields, ground-truth
scoring, and that the 'none' scenario is plain training."""

from __future__ import annotations

import csv
import json
import re

import pytest
import torch
from helpers import tiny

from robustlr import config as config_module
from robustlr import experiment
from robustlr.runs.folder import run_in_folder

IMAGES = {"synthetic": {"num_examples": 400, "num_classes": 3, "shape": [1, 8, 8]}}


def run(tmp_path, name, **overrides):
    config = experiment.from_mapping(tiny(data=IMAGES, **overrides))
    run_dir = run_in_folder(config, out=tmp_path / name, show_progress=False)
    with (run_dir / "epochs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return json.loads((run_dir / "summary.json").read_text()), rows


def independent_backdoor(probe, model) -> dict[str, float]:
    """ASR and RA recomputed in plain torch from the probe's own model, test set and trigger."""
    x, y = probe.test
    outside = y != probe.poison.target
    was_training = model.training
    model.eval()
    with torch.no_grad():
        predicted = model(probe.poison.apply_trigger(x[outside])).argmax(1)
    model.train(was_training)
    return {"asr": (predicted == probe.poison.target).float().mean().item(),
            "ra": (predicted == y[outside]).float().mean().item(), "examples": int(outside.sum())}


def independent_filter(keep, poisoned_indices) -> dict[str, float]:
    """Precision, recall and the clean share removed, by set arithmetic on positions."""
    removed = {i for i, k in enumerate(keep.tolist()) if not k}
    poisoned = set(poisoned_indices.tolist())
    caught = len(removed & poisoned)
    clean = len(keep) - len(poisoned)
    return {"filter_precision": caught / len(removed), "filter_recall": caught / len(poisoned),
            "clean_removed": len(removed - poisoned) / clean, "removed_count": len(removed),
            "poisoned_count": len(poisoned)}


def test_a_backdoor_with_and_without_a_filter_reports_its_fields(tmp_path, monkeypatch):
    from robustlr.training import poison_stage
    from robustlr.training.probes.backdoor import BackdoorProbe

    backdoor, filtering = [], []
    final, metrics = BackdoorProbe.final, poison_stage.filter_metrics

    def spy_final(self, model, trial_dir):
        backdoor.append(independent_backdoor(self, model))
        return final(self, model, trial_dir)

    def spy_metrics(keep, poisoned_indices):
        filtering.append(independent_filter(keep, poisoned_indices))
        return metrics(keep, poisoned_indices)

    monkeypatch.setattr(BackdoorProbe, "final", spy_final)
    monkeypatch.setattr(poison_stage, "filter_metrics", spy_metrics)
    summary, rows = run(tmp_path, "grid", schedules=["constant"],
                        poisoning=["badnets(rate=0.1, target=0, size=2)"],
                        filter=["none", "spectral"], filtering={"epochs": 2})
    unfiltered, filtered = summary
    assert len(backdoor) == 2 and len(filtering) == 1  # one worker: the spies saw every trial
    for record, expected in zip(summary, backdoor):
        assert record["status"] == "ok", record.get("error")
        assert record["poison"] == "badnets(rate=0.1, target=0, size=2)"
        assert 0.09 <= record["poison_rate"] <= 0.11
        assert record["asr"] == pytest.approx(expected["asr"], abs=1e-9)
        assert record["ra"] == pytest.approx(expected["ra"], abs=1e-9)
        assert record["asr_best"] >= record["asr"] - 1e-9
        assert record["asr_examples"] == expected["examples"]
    assert "filter_recall" not in unfiltered
    assert filtered["filter"] == "spectral"
    (expected,) = filtering
    for key, value in expected.items():
        assert filtered[key] == pytest.approx(value, abs=1e-12), key
    p, r = expected["filter_precision"], expected["filter_recall"]
    assert filtered["filter_f1"] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)
    # the filter removes at most its budget: 1.5 x the expected poison count
    assert filtered["removed_count"] <= round(1.5 * filtered["poisoned_count"]) + 1
    assert all(row["asr"] != "" for row in rows)


def test_the_none_scenario_is_plain_training(tmp_path):
    plain, plain_rows = run(tmp_path, "plain", schedules=["constant"])
    explicit, explicit_rows = run(tmp_path, "explicit", schedules=["constant"],
                                  poisoning=["none"], filter=["none"])
    timing = ("train_seconds", "wall_seconds", "samples_per_second", "epoch_seconds", "eval_seconds")

    def strip(records):
        return [{k: v for k, v in r.items() if k not in timing} for r in records]

    assert strip(plain) == strip(explicit) and strip(plain_rows) == strip(explicit_rows)


@pytest.mark.parametrize("field, value, message", [
    ("poisoning", "badnets(rate=1.5)", "poisoning[0]: poison 'badnets': rate must be a number in (0, 1)"),
    ("poisoning", "badnest(rate=0.1)", "poisoning[0]: poison 'badnest' is unknown"),
    ("filter", "spectal", "filter[0]: filter 'spectal' is unknown"),
])
def test_bad_poison_and_filter_specs_are_config_errors(field, value, message):
    with pytest.raises(config_module.ConfigError, match=re.escape(message)):
        experiment.from_mapping(tiny(**{field: [value]}))


def test_the_trial_trains_on_the_examples_the_filter_kept(monkeypatch):
    """Fast guard against a filter that is scored but not applied: the data the real training
    run receives is the poisoned split at the kept positions, nothing else."""
    from robustlr.grid import expand
    from robustlr.training import poison_stage
    from robustlr.training import trial as trial_module

    seen: dict = {}
    real_filter, real_metrics, real_train = (poison_stage._filter, poison_stage.filter_metrics,
                                             trial_module.train_trial)

    def spy_filter(config, trial, bundle, poisoned):
        seen["poisoned"] = bundle.train
        return real_filter(config, trial, bundle, poisoned)

    def spy_metrics(keep, poisoned_indices):
        seen["keep"] = keep.clone()
        return real_metrics(keep, poisoned_indices)

    def spy_train(config, trial, bundle, **kwargs):
        seen["trained_on"] = bundle.train
        return real_train(config, trial, bundle, **kwargs)

    monkeypatch.setattr(poison_stage, "_filter", spy_filter)
    monkeypatch.setattr(poison_stage, "filter_metrics", spy_metrics)
    monkeypatch.setattr(trial_module, "train_trial", spy_train)
    config = experiment.from_mapping(tiny(
        data=IMAGES, schedules=["constant"], train={"epochs": 1},
        poisoning=["badnets(rate=0.1, target=0, size=2)"], filter=["spectral"],
        filtering={"epochs": 1}))
    (trial,) = expand(config)
    summary = trial_module.run_trial(config, trial, on_epoch=lambda row: None)
    keep = seen["keep"]
    assert summary["removed_count"] == int((~keep).sum()) > 0
    x, y = seen["trained_on"]
    assert torch.equal(x, seen["poisoned"][0][keep]) and torch.equal(y, seen["poisoned"][1][keep])
