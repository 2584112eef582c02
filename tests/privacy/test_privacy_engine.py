"""privacy.engine: equivalence with SGD, step skipping, attacks with hooks off, fixing models."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robustlr.privacy import engine
from robustlr.privacy.grad_sample.modules import fix_model, hooks_disabled, unwrap


def tiny_cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 10))


def _private(model, x, y, *, batch_size, mode="ghost", sigma=0.0, clip=1e6, poisson=False):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    return engine.make_private(module=model, optimizer=optimizer, data_loader=loader,
                               noise_multiplier=sigma, max_grad_norm=clip,
                               poisson_sampling=poisson, grad_sample_mode=mode)


def _train(private, steps=None):
    private.module.train()
    for i, (xb, yb) in enumerate(private.data_loader):
        if steps is not None and i == steps:
            break
        private.optimizer.zero_grad()
        private.criterion(private.module(xb), yb).backward()
        private.optimizer.step()


@pytest.mark.parametrize("mode", engine.GRAD_SAMPLE_MODES)
def test_zero_noise_no_clipping_equals_plain_sgd(digits_tensors, mode):
    x, y = digits_tensors[0][:128], digits_tensors[1][:128]
    model, reference = tiny_cnn(), tiny_cnn()
    _train(_private(model, x, y, batch_size=32, mode=mode))  # fixed batches: mean = sum / 32
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    for xb, yb in zip(x.split(32), y.split(32)):
        optimizer.zero_grad()
        nn.functional.cross_entropy(reference(xb), yb).backward()
        optimizer.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", ["ghost", "ghost_bk"])
def test_memory_manager_skips_three_of_four_physical_steps(digits_tensors, mode):
    x, y = digits_tensors[0][:256], digits_tensors[1][:256]
    private = _private(tiny_cnn(), x, y, batch_size=64, sigma=1.0, clip=1.0, mode=mode)
    skipped, before = [], [p.detach().clone() for p in private.module.parameters()]
    with engine.memory_managed(private.data_loader, 16, private.optimizer) as loader:
        for xb, yb in loader:
            assert len(yb) <= 16
            private.optimizer.zero_grad()
            private.criterion(private.module(xb), yb).backward()
            private.optimizer.step()
            skipped.append(engine.step_was_skipped(private.optimizer))
            moved = any(not torch.equal(p, b) for p, b in zip(private.module.parameters(), before))
            assert moved == (not skipped[-1] or any(not s for s in skipped))
    assert skipped == [True, True, True, False] * 4


def test_schedules_reach_the_optimizer_and_the_ghost_module(digits_tensors):
    x, y = digits_tensors[0][:64], digits_tensors[1][:64]
    private = _private(tiny_cnn(), x, y, batch_size=32)
    engine.set_noise_multiplier(private.optimizer, 0.7)
    engine.set_max_grad_norm(private.optimizer, 0.5)
    assert private.optimizer.noise_multiplier == 0.7 and private.optimizer.max_grad_norm == 0.5
    assert private.module.max_grad_norm == 0.5
    with pytest.raises(ValueError, match="max_grad_norm"):
        engine.set_max_grad_norm(private.optimizer, 0.0)
    with pytest.raises(ValueError, match="grad_sample_mode"):
        _private(tiny_cnn(), x, y, batch_size=32, mode="magic")


def _pgd(model, x, y, *, eps=0.1, step_size=0.03, steps=3):
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x_adv), y)
        grad, = torch.autograd.grad(loss, x_adv)
        x_adv = (x + (x_adv.detach() + step_size * grad.sign() - x).clamp(-eps, eps)).clamp(0, 1)
    return x_adv


@pytest.mark.parametrize("mode", ["ghost", "hooks", "ghost_bk"])
def test_attacks_work_inside_hooks_disabled_and_training_continues(digits_tensors, mode):
    from art.attacks.evasion import FastGradientMethod
    from art.estimators.classification import PyTorchClassifier

    x, y = digits_tensors[0][:128], digits_tensors[1][:128]
    private = _private(tiny_cnn(), x, y, batch_size=64, mode=mode, sigma=0.5, clip=1.0)
    _train(private, steps=1)
    state = [(p.grad, getattr(p, "grad_sample", None)) for p in private.module.parameters()]
    for train_mode in (True, False):
        private.module.train(train_mode)
        with hooks_disabled(private.module) as model:
            x_adv = _pgd(model, x[:32], y[:32])
            classifier = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(),
                                           input_shape=(1, 8, 8), nb_classes=10,
                                           clip_values=(0.0, 1.0))
            x_art = FastGradientMethod(classifier, eps=0.1).generate(x[:32].numpy())
        assert 0 < (x_adv - x[:32]).abs().max() <= 0.1 + 1e-6
        assert np.abs(x_art - x[:32].numpy()).max() == pytest.approx(0.1, abs=1e-5)
        after = [(p.grad, getattr(p, "grad_sample", None)) for p in private.module.parameters()]
        assert all(a[0] is b[0] and a[1] is b[1] for a, b in zip(after, state))  # untouched
    before = [p.detach().clone() for p in private.module.parameters()]
    _train(private)
    assert any(not torch.equal(p, b) for p, b in zip(private.module.parameters(), before))


def test_without_hooks_disabled_attacks_pollute_or_crash(digits_tensors):
    x, y = digits_tensors[0][:64], digits_tensors[1][:64]
    private = _private(tiny_cnn(), x, y, batch_size=64, mode="hooks")
    private.module.train()  # the attack's backward writes per-sample gradients
    _pgd(private.module, x, y, steps=1)
    assert all(p.grad_sample is not None for p in private.module.parameters())
    private.module.eval()  # the forward hook stores nothing, the backward hook needs it
    with pytest.raises((ValueError, IndexError), match="No activations|pop from empty list"):
        _pgd(private.module, x, y, steps=1)


def test_fix_model_replaces_batchnorm_and_inplace_relu():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                          nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    fixed, messages = fix_model(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fixed.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in fixed.modules())
    assert any("GroupNorm" in m for m in messages) and any("inplace" in m for m in messages)
    assert fix_model(fixed)[1] == []
    private = _private(copy.deepcopy(fixed), torch.rand(8, 1, 8, 8), torch.arange(8),
                       batch_size=8, mode="hooks")
    assert type(unwrap(private.module)) is nn.Sequential
