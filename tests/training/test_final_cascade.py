"""The final attack cascade runs on the last model and on the best-robust one; when the best
epoch is the last, they are the same weights and the (costly) cascade runs once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlr.training.probes import robustness


def _probe(monkeypatch, monitor: list[float]):
    calls = []
    real = robustness.cascade

    def counting(model, x, y, attacks, **kwargs):
        calls.append([name for name, _ in attacks])
        return real(model, x, y, attacks, **kwargs)

    monkeypatch.setattr(robustness, "cascade", counting)
    x, y = torch.rand(12, 1, 4, 4, generator=torch.Generator().manual_seed(0)), torch.arange(12) % 3
    probe = robustness.RobustnessProbe(attack="pgd(eps=0.1, steps=2)", final=["pgd(eps=0.1, steps=3)"],
                                       test=(x, y), val=(x[:0], y[:0]), subset=12, seed=0,
                                       sanity_checks=False, batch_size=6)
    values = iter(monitor)
    monkeypatch.setattr(probe, "_robust", lambda model, x, y, attack: next(values))
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    for _ in range(len(monitor) // 2):  # each epoch reads the monitor, then FGSM
        probe.epoch(model)
    return probe, model, calls


def test_best_epoch_last_attacks_once(monkeypatch):
    probe, model, calls = _probe(monkeypatch, [0.2, 0.9, 0.5, 0.9])  # epoch 2 is the best
    summary = probe.final(model, None)
    assert len(calls) == 1 and summary["best_robust_epoch"] == 2
    assert summary["robust_acc_best"] == summary["robust_acc"]
    assert summary["cascade_best"] == summary["cascade"]


def test_best_epoch_earlier_attacks_its_own_weights(monkeypatch):
    probe, model, calls = _probe(monkeypatch, [0.5, 0.9, 0.2, 0.9])  # epoch 1 is the best
    with torch.no_grad():
        model[1].weight.zero_()  # the last weights differ from the stored best ones
        model[1].bias.copy_(torch.tensor([5.0, 0.0, 0.0]))
    summary = probe.final(model, None)
    assert len(calls) == 2 and summary["best_robust_epoch"] == 1
    assert summary["robust_acc"] == pytest.approx(4 / 12)  # predicts class 0 whatever the input
