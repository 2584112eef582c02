"""Weight averaging as a grid dimension: EMA and SWA against their closed forms, BatchNorm
statistics recomputed for SWA with the raw weights restored, averaged numbers beside the raw
ones without changing the raw trajectory, and trial ids unchanged when averaging is none."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict

import pytest
import torch
from helpers import tiny

from robustlr import data, experiment
from robustlr.averaging import AVERAGING
from robustlr.config import ConfigError
from robustlr.grid import Trial, _canonical, expand
from robustlr.training.averaging import attach
from robustlr.training.loop import train_trial


def _set(model: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_ema_follows_its_closed_form_from_the_first_step():
    # decay 0.75, not 0.5: at 0.5 `decay` and `1 - decay` coincide and a swap would pass
    model = torch.nn.Linear(2, 2)
    averager = attach(AVERAGING.build("ema(decay=0.75)"), model)
    for value in (4.0, 0.0, 2.0):
        _set(model, value)
        averager.update(progress=0.5)
    # copy at the first update, then avg <- 0.75 avg + 0.25 w: 4 -> 3 -> 2.75 (swapped: 4 -> 1 -> 1.75)
    assert all(torch.equal(t, torch.full_like(t, 2.75)) for t in averager.average)


def test_swa_is_the_mean_of_the_weights_from_its_start_on():
    model = torch.nn.Linear(2, 2)
    averager = attach(AVERAGING.build("swa(start=0.5)"), model)
    for progress, value in ((0.25, 100.0), (0.5, 1.0), (0.75, 2.0), (1.0, 6.0)):
        _set(model, value)
        averager.update(progress=progress)
    assert averager.count == 3
    assert all(torch.allclose(t, torch.full_like(t, 3.0)) for t in averager.average)


def test_swa_recomputes_batchnorm_statistics_and_restores_the_raw_model():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    averager = attach(AVERAGING.build("swa(start=0.0)"), model)
    averager.update(progress=0.0)
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(64, 3) * 5 + 2
    generator = torch.Generator().manual_seed(0)

    def batches():  # drawn like the training batches: from the batch-order generator
        for index in torch.randperm(64, generator=generator).split(16):
            yield x[index], None

    before = generator.get_state()
    with averager.swapped_in(model, batches(), generator=generator) as averaged:
        features = averaged[0](x)
        torch.testing.assert_close(averaged[1].running_mean, features.mean(0))
    assert torch.equal(generator.get_state(), before)  # the pass left the batch order alone
    for key, value in model.state_dict().items():
        assert torch.equal(value, raw[key]), key


def _config(**overrides):
    return experiment.from_mapping(tiny(schedules=["cosine"], **overrides))


def test_averaged_numbers_sit_beside_an_unchanged_raw_trajectory():
    config = _config(averaging=["none", "ema(decay=0.9)", "swa(start=0.5)"])
    bundle = data.prepare(config.data, seed=0)
    rows: dict[str, list] = {}
    summaries = {}
    for trial in expand(config):
        rows[trial.averaging] = []
        summaries[trial.averaging] = train_trial(config, trial, bundle,
                                                 on_epoch=rows[trial.averaging].append)
    raw_fields = ("train_loss", "test_acc", "val_loss", "lr", "step")
    for averaging in ("ema(decay=0.9)", "swa(start=0.5)"):
        for plain, averaged in zip(rows["none"], rows[averaging]):
            assert {k: plain[k] for k in raw_fields} == {k: averaged[k] for k in raw_fields}
        assert summaries[averaging]["avg_clean_acc"] == rows[averaging][-1]["avg_test_acc"]
        assert summaries[averaging]["averaging"] == averaging
    assert all(math.isfinite(r["avg_test_acc"]) for r in rows["ema(decay=0.9)"])
    # SWA starts at half of training: epoch 1 of 3 ends at a third, so no average yet
    assert math.isnan(rows["swa(start=0.5)"][0]["avg_test_acc"])
    assert "avg_test_acc" not in rows["none"][0] and "avg_clean_acc" not in summaries["none"]


def test_a_trial_without_averaging_keeps_its_id():
    trial = Trial("cosine(warmup=0.1)", "pgd_at(eps=0.1)", 0.5, 3, "badnets(rate=0.1)", "none",
                  "none", "abc123")
    # a trial built by hand (no data, setup or model) keeps the id it had before those fields
    fields = {k: v for k, v in asdict(trial).items()
              if k not in ("averaging", "setup_hash", "model")}
    canonical = {k: v if k == "data_hash" else _canonical(v) for k, v in fields.items()}
    expected = hashlib.sha1(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:10]
    assert trial.id == f"cosine-{expected}"
    assert Trial(*asdict(trial).values()).id == trial.id
    averaged = Trial(**{**asdict(trial), "averaging": "ema(decay=0.999)"})
    assert averaged.id != trial.id


@pytest.mark.parametrize("value, message", [
    ("emma", "averaging[0]: averaging 'emma' is unknown; allowed: ema, swa"),
    ("ema(decay=1.5)", "averaging[0]: averaging 'ema': decay must be in (0, 1), got 1.5"),
    ("swa(begin=0.5)", "averaging[0]: averaging 'swa': unknown parameter 'begin'; allowed: start"),
])
def test_a_bad_averaging_spec_is_one_line_naming_the_field(value, message):
    with pytest.raises(ConfigError) as error:
        _config(averaging=[value])
    assert str(error.value) == message
