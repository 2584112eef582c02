"""torch's own LR schedulers as schedules (``torch:Name(...)``): a trial's LR at every
optimizer step equals the LR torch sets when it drives the same optimizer itself, for five
classes including OneCycleLR and ReduceLROnPlateau (stepped on the validation loss per
epoch, as ``plateau``); bad specs are one-line SpecErrors; the plateau tracker resumes."""

from __future__ import annotations

import pytest
import torch
from helpers import record_lrs, tiny

from robustlr import config as config_module
from robustlr import data, experiment, schedules
from robustlr.grid import expand
from robustlr.spec import SpecError
from robustlr.training.loop import train_trial

LR = 0.1


def _train(monkeypatch, spec: str, epochs: int = 3):
    lrs = record_lrs(monkeypatch)
    config = experiment.from_mapping(tiny(schedules=[spec], train={"epochs": epochs, "lr": LR}))
    bundle = data.prepare(config.data, seed=0)
    rows: list[dict] = []
    train_trial(config, expand(config)[0], bundle, on_epoch=rows.append)
    return lrs, rows


def _torch_lrs(make, steps: int) -> list[float]:
    """The LR torch's scheduler sets before each of ``steps`` steps of an SGD optimizer."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR, momentum=0.9)
    scheduler = make(optimizer)
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


@pytest.mark.parametrize("spec, make", [
    ("torch:OneCycleLR(max_lr=0.5)",
     lambda n: lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=n)),
    ("torch:CosineAnnealingLR(eta_min=0.001)",
     lambda n: lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n, eta_min=0.001)),
    ("torch:StepLR(step_size=4, gamma=0.5)",
     lambda n: lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)),
    ("torch:LinearLR(start_factor=0.2)",
     lambda n: lambda opt: torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.2, total_iters=n)),
    ("torch:ExponentialLR(gamma=0.8)",
     lambda n: lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.8)),
], ids=["OneCycleLR", "CosineAnnealingLR", "StepLR", "LinearLR", "ExponentialLR"])
def test_the_trial_lr_equals_torch_driving_the_same_optimizer_step_for_step(monkeypatch, spec, make):
    lrs, _ = _train(monkeypatch, spec)
    assert len(lrs) == 15  # 3 epochs of 5 batches
    assert lrs == pytest.approx(_torch_lrs(make(len(lrs)), len(lrs)), rel=1e-12, abs=1e-15)
    assert len(set(lrs)) > 2  # the schedule moved


def test_reduce_on_plateau_steps_on_the_validation_loss_once_per_epoch(monkeypatch):
    lrs, rows = _train(monkeypatch, "torch:ReduceLROnPlateau(patience=0, factor=0.5, threshold=10.0)",
                       epochs=4)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, factor=0.5,
                                                           threshold=10.0)
    expected = []
    for row in rows:
        expected += [optimizer.param_groups[0]["lr"]] * 5
        scheduler.step(row["val_loss"])
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert min(lrs) < LR  # the threshold forces reductions


def test_values_plan_the_schedule_over_the_asked_steps():
    got = schedules.values(schedules.parse("torch:StepLR(step_size=2, gamma=0.1)"), 5)
    assert got == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


def test_a_torch_spec_prints_as_written_and_is_accepted_in_a_config():
    assert str(schedules.parse({"name": "torch:StepLR", "step_size": 2})) == "torch:StepLR(step_size=2)"
    config = experiment.from_mapping(tiny(schedules=["torch:OneCycleLR(max_lr=0.1)"]))
    assert expand(config)[0].schedule == "torch:OneCycleLR(max_lr=0.1)"


@pytest.mark.parametrize("spec, message", [
    ("torch:SequentialLR", "unknown torch scheduler; allowed: torch:ConstantLR"),
    ("torch:Nope(gamma=0.5)", "unknown torch scheduler"),
    ("torch:StepLR(step=2)", "unknown parameter 'step'; allowed: step_size, gamma"),
    ("torch:StepLR", "step_size"),  # torch's own message: a required argument is missing
    ("torch:OneCycleLR(max_lr=0.1, pct_start=2.0)", "pct_start"),
])
def test_bad_torch_specs_are_one_line_spec_errors(spec, message):
    with pytest.raises(SpecError, match=f"^schedule '{spec.split('(')[0]}': .*{message}") as caught:
        schedules.parse(spec)
    assert "\n" not in str(caught.value)
    with pytest.raises(config_module.ConfigError, match="schedules\\[0\\]"):
        experiment.from_mapping(tiny(schedules=[spec]))


def test_the_plateau_tracker_resumes_from_its_state():
    schedule = schedules.parse("torch:ReduceLROnPlateau(patience=0, factor=0.5)")
    tracker = schedule.tracker()
    for loss in (1.0, 2.0, 3.0):
        tracker.observe(loss)
    restored = schedule.tracker()
    restored.load_state_dict(tracker.state_dict())
    assert restored.factor == tracker.factor == 0.25
    assert restored.observe(4.0) == tracker.observe(4.0) == 0.125
