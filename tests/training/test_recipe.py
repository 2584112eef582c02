"""The user's recipe: gradient accumulation equals the larger batch and the schedule clock
counts optimizer steps, clipping bounds the update, label smoothing reaches every regime's
loss, mixed precision trains and keeps attacks correct, and what DP cannot combine with is
refused in one line."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from helpers import record_lrs, tiny

from robustlr import data, experiment, schedules
from robustlr.attacks.pgd import pgd
from robustlr.config import ConfigError
from robustlr.grid import Trial
from robustlr.regimes import REGIMES
from robustlr.training.loop import train_trial
from robustlr.training.recipe import Recipe

CNN_DATA = {"name": "synthetic", "val_fraction": 0.2, "test_fraction": 0.2,
            "synthetic": {"num_examples": 240, "num_classes": 3, "shape": [3, 8, 8]}}


def run(monkeypatch=None, **overrides):
    config = experiment.from_mapping(tiny(**overrides))
    bundle = data.prepare(config.data, seed=0)
    captured = {}
    if monkeypatch is not None:
        monkeypatch.setattr("robustlr.training.loop.Regime.trained_model",
                            lambda self, model: captured.setdefault("model", model))
    trial = Trial(str(config.schedules[0]), str(config.regimes[0]), 1.0, 0)
    summary = train_trial(config, trial, bundle, on_epoch=lambda row: None)
    return summary, captured.get("model")


def test_two_accumulated_half_batches_train_like_one_full_batch(monkeypatch):
    # 144 training examples: batches of 32 are 4 full and one of 16; micro-batches of 16
    # pair up the same way (the last group is short and is rescaled to a mean)
    full, full_model = run(monkeypatch, train={"batch_size": 32, "momentum": 0.0})
    monkeypatch.undo()
    half, half_model = run(monkeypatch, train={"batch_size": 16, "accumulate": 2, "momentum": 0.0})
    assert half["steps"] == full["steps"] == 3 * 5
    for ours, reference in zip(half_model.parameters(), full_model.parameters()):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_the_schedule_clock_counts_optimizer_steps_not_micro_batches(monkeypatch):
    seen = record_lrs(monkeypatch)
    summary, _ = run(schedules=["cosine"], train={"batch_size": 16, "accumulate": 4, "lr": 0.3})
    total = summary["steps"]
    assert total == summary["planned_steps"] == 3 * math.ceil(9 / 4)
    cosine = schedules.parse("cosine")
    assert seen == pytest.approx([0.3 * cosine(s / total) for s in range(total)], rel=1e-12)


def test_grad_clip_bounds_the_total_gradient_norm_of_each_step():
    model = torch.nn.Linear(5, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    recipe = Recipe(device=torch.device("cpu"), grad_clip=0.01)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    recipe.backward(100 * model(torch.randn(8, 5)).square().sum(), optimizer)
    assert recipe.step(optimizer, REGIMES.build("standard"), model.parameters())
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm().item() == pytest.approx(0.01, rel=1e-4)


@pytest.mark.parametrize("spec", ["standard", "pgd_at(eps=0.0, steps=1, step_size=0.1)",
                                  "fgsm_rs(eps=0.0)", "trades(eps=0.0, beta=0.0, step_size=0.1)"])
def test_label_smoothing_reaches_every_regimes_loss(spec):
    regime = REGIMES.build(spec)
    regime.label_smoothing = 0.2
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    x, y = torch.rand(6, 3, 2, 2), torch.tensor([0, 1, 2, 3, 0, 1])
    regime.generator = torch.Generator().manual_seed(0)
    loss = regime.losses(model, x, y, progress=0.0)["loss"]
    expected = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.2)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_with_channels_last_trains_a_cnn_on_cpu(precision):
    summary, _ = run(model="cnn", data=CNN_DATA, schedules=["cosine"],
                     train={"precision": precision, "channels_last": True, "grad_clip": 5.0})
    assert summary["status"] == "ok" and math.isfinite(summary["train_loss"])
    assert summary["clean_acc"] > 0.6  # 3 classes: it learned under the reduced precision


def test_an_overflowing_fp16_step_is_skipped_and_not_counted():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    recipe = Recipe(device=torch.device("cpu"), precision="fp16")
    before = [p.detach().clone() for p in model.parameters()]
    recipe.backward(model(torch.full((2, 3), math.inf)).sum(), optimizer)
    assert not recipe.step(optimizer, REGIMES.build("standard"), model.parameters())
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)


def test_pgd_robust_accuracy_under_bf16_is_within_one_point_of_fp32(monkeypatch):
    torch.set_num_threads(1)
    _, model = run(monkeypatch, model="cnn", schedules=["cosine"], train={"epochs": 2},
                   data={"synthetic": {"num_examples": 1500, "num_classes": 3, "shape": [1, 8, 8]}})
    model.eval()
    x, y = data.prepare(experiment.from_mapping(tiny(data={"synthetic": {
        "num_examples": 1500, "num_classes": 3, "shape": [1, 8, 8]}})).data, seed=0).test
    accuracy = {}
    for precision in ("fp32", "bf16"):
        with Recipe(device=torch.device("cpu"), precision=precision).autocast():
            x_adv = pgd(model, x, y, eps=0.1, step_size=0.025, steps=10,
                        generator=torch.Generator().manual_seed(0))
            accuracy[precision] = (model(x_adv).argmax(1) == y).float().mean().item()
    assert 0.2 < accuracy["fp32"] < 0.8  # the attack is neither trivial nor hopeless here
    assert abs(accuracy["bf16"] - accuracy["fp32"]) <= 0.01


@pytest.mark.slow
def test_compile_trains_on_cpu_or_is_skipped_with_the_reason():
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile on CPU needs a C compiler (inductor); none is installed")
    summary, _ = run(schedules=["cosine"], train={"compile": True, "epochs": 1})
    assert summary["status"] == "ok" and summary["steps"] == 5


@pytest.mark.parametrize("field, value", [("accumulate", 2), ("grad_clip", 1.0),
                                          ("label_smoothing", 0.1), ("precision", "fp16"),
                                          ("precision", "bf16"),
                                          ("compile", True)])
def test_dp_refuses_what_it_would_silently_misaccount_in_one_line(field, value):
    with pytest.raises(ConfigError, match=rf"^config: train\.{field} cannot be used with the dp "
                                          r"regime \(.+\)$"):
        experiment.from_mapping(tiny(regimes=["standard", "dp(noise_multiplier=1.0)"],
                                        train={field: value}))


def test_a_cifar_shaped_run_with_crop_flip_bf16_and_channels_last_trains_on_cpu():
    summary, _ = run(model={"name": "cnn", "width": 8, "hidden": 16}, schedules=["cosine"],
                     data={"augment": ["random_crop(padding=4)", "hflip"],
                           "synthetic": {"num_examples": 60, "num_classes": 10, "shape": [3, 32, 32]}},
                     train={"precision": "bf16", "channels_last": True, "epochs": 1})
    assert summary["status"] == "ok" and math.isfinite(summary["train_loss"])
    assert summary["steps"] == summary["planned_steps"] > 0
