"""The loop itself: the schedule is applied at every optimizer step, a constant schedule is
plain training, and schedule-free optimizers are evaluated at their evaluation weights."""

from __future__ import annotations

import pytest
import torch
from helpers import record_lrs, tiny

from robustlr import config as config_module
from robustlr import data, models, optimizers, schedules
from robustlr.grid import expand
from robustlr.modes import evaluating, training
from robustlr.training.loop import train_trial


def prepared(**overrides):
    config = config_module.from_mapping(tiny(**overrides))
    return config, data.prepare(config.data, seed=0)


@pytest.mark.parametrize("spec", ["cosine(warmup=0.1, floor=0.01)", "onecycle", "cyclic(cycles=2)"])
def test_every_optimizer_step_uses_the_schedule_at_its_progress(monkeypatch, spec):
    seen = record_lrs(monkeypatch)
    config, bundle = prepared(schedules=[spec], train={"epochs": 3, "lr": 0.3})
    trial = expand(config)[0]
    summary = train_trial(config, trial, bundle, on_epoch=lambda row: None)
    total = summary["steps"]
    schedule = schedules.parse(spec)
    assert len(seen) == total > 10
    assert seen == pytest.approx([0.3 * schedule(s / total) for s in range(total)], rel=1e-12)


def test_a_constant_schedule_is_plain_training(monkeypatch):
    config, bundle = prepared(schedules=["constant"], train={"epochs": 2, "lr": 0.1})
    trial = expand(config)[0]
    captured = {}
    monkeypatch.setattr("robustlr.training.loop.Regime.trained_model",
                        lambda self, model: captured.setdefault("model", model))
    train_trial(config, trial, bundle, on_epoch=lambda row: None)

    torch.manual_seed(trial.seed)
    generator = torch.Generator().manual_seed(trial.seed)
    model = models.build(config.model, input_shape=bundle.input_shape,
                         num_classes=bundle.num_classes, mean=bundle.mean, std=bundle.std)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = bundle.train
    for _ in range(2):
        for index in torch.randperm(len(y), generator=generator).split(32):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    for ours, reference in zip(captured["model"].parameters(), model.parameters()):
        torch.testing.assert_close(ours, reference, rtol=0, atol=0)


def test_schedule_free_is_evaluated_at_its_averaged_weights_and_restored():
    config, bundle = prepared(schedules=["schedule_free"], train={"optimizer": "sgd"})
    model = models.build(config.model, input_shape=bundle.input_shape,
                         num_classes=bundle.num_classes, mean=bundle.mean, std=bundle.std)
    optimizer = optimizers.build(config.train, model.parameters(), lr=0.1,
                                 schedule_free_warmup_steps=0)
    training(model, optimizer)
    x, y = bundle.train
    for index in torch.arange(len(y)).split(32):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[index]), y[index]).backward()
        optimizer.step()
    train_point = [p.detach().clone() for p in model.parameters()]
    with evaluating(model, optimizer):
        assert not model.training
        eval_point = [p.detach().clone() for p in model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(train_point, eval_point))
    assert model.training
    for restored, original in zip(model.parameters(), train_point):
        torch.testing.assert_close(restored, original)
