"""Reference AutoAttack (pyautoattack): validation, the cascade's per-attack numbers, agreement
with pyautoattack called directly and with torchattacks, and never weaker than PGD-20."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlr.attacks import EVASION_ATTACKS, PGD, AutoAttack, cascade, expand_stages, pgd
from robustlr.attacks.autoattack import stage_accuracies

EPS = 0.1
N = 40


def tiny_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def train(model: nn.Module, x, y, *, adversarial: bool, epochs: int = 10) -> nn.Module:
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=generator).split(64):
            xb, yb = x[batch], y[batch]
            if adversarial:  # PGD-AT (Madry et al.), eval mode is a no-op for this MLP
                xb = pgd(model, xb, yb, eps=EPS, step_size=EPS / 2, steps=5, generator=generator)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module", params=["standard", "pgd_at"])
def trained(request, digits_tensors):
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = digits_tensors
    model = train(tiny_mlp(), x_train, y_train, adversarial=request.param == "pgd_at")
    return model, x_test[:N], y_test[:N]


def shrink(reference):
    """Few iterations and queries: the full protocol costs ~50 s per call on one busy core,
    most of it Python overhead in Square and FAB; the slow tests run it in full."""
    reference.apgd.n_iter = reference.apgd_targeted.n_iter = reference.fab.n_iter = 5
    reference.apgd_targeted.n_target_classes = reference.fab.n_target_classes = 2
    reference.square.n_queries = 50
    return reference


@pytest.fixture
def quick(monkeypatch):
    build = AutoAttack.reference
    monkeypatch.setattr(AutoAttack, "reference", lambda self, *a: shrink(build(self, *a)))


def test_registered_and_validated():
    assert EVASION_ATTACKS["autoattack"] is AutoAttack
    for bad, field in [(dict(eps=0.0), "eps"), (dict(eps=0.1, norm="l3"), "norm"),
                       (dict(eps=0.1, version="plus"), "version"), (dict(eps=2.0), "eps"),
                       (dict(eps=0.1, seed=-1), "seed")]:
        with pytest.raises(ValueError, match=field):
            AutoAttack(**bad)


def test_spec_errors_are_one_line():
    from robustlr.catalog import ATTACKS
    from robustlr.spec import SpecError

    assert ATTACKS.build("autoattack(eps=0.5, norm=l2, version=rand)").version == "rand"
    with pytest.raises(SpecError, match=r"^attack 'autoattack': norm must be one of linf, l2, l1"):
        ATTACKS.build("autoattack(eps=0.1, norm=l3)")


def test_missing_package_names_the_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyautoattack" else real(name, *a))
    with pytest.raises(ValueError, match="pip install pyautoattack"):
        AutoAttack(eps=0.1)


def test_cascade_keeps_each_stage_and_matches_pyautoattack_directly(trained, quick):
    from pyautoattack import AutoAttack as Reference

    model, x, y = trained
    attack = AutoAttack(eps=EPS, seed=0)
    result = cascade(model, x, y, expand_stages([("autoattack(eps=0.1)", attack)]), batch_size=N)
    names = [name.rpartition(":")[2] for name, _ in result.steps]
    assert names == ["apgd-ce", "apgd-t", "fab-t", "square"]
    accuracies = [acc for _, acc in result.steps]
    assert accuracies == sorted(accuracies, reverse=True) and accuracies[0] <= result.clean_acc
    fields = stage_accuracies(result.steps)
    assert fields["autoattack_acc"] == fields["autoattack_square_acc"] == result.robust_acc
    reference = shrink(Reference(model, norm="Linf", eps=EPS, version="standard", seed=0))
    x_adv, _ = reference.run_standard_evaluation(x, y, batch_size=N)
    with torch.no_grad():
        direct = (model(x_adv).argmax(1) == y).float().mean().item()
    assert result.robust_acc == pytest.approx(direct)
    assert (x_adv - x).abs().max() <= EPS + 1e-6


@pytest.mark.slow
def test_never_weaker_than_pgd20(trained):
    model, x, y = trained
    for norm, eps in (("linf", EPS), ("l2", 1.0)):
        strong = cascade(model, x, y, [("aa", AutoAttack(eps=eps, norm=norm))]).robust_acc
        weak = cascade(model, x, y, [("pgd", PGD(eps=eps, steps=20, norm=norm))]).robust_acc
        assert strong <= weak, norm


def test_restores_rng_and_modes(trained, quick):
    model, x, y = trained
    model.train()
    state = torch.random.get_rng_state()
    AutoAttack(eps=EPS)(model, x[:4], y[:4])
    assert torch.equal(torch.random.get_rng_state(), state) and model.training
    model.eval()


@pytest.mark.slow
def test_agrees_with_torchattacks(trained):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = trained
    ours = cascade(model, x, y, [("aa", AutoAttack(eps=EPS))]).robust_acc
    other = torchattacks.AutoAttack(model, norm="Linf", eps=EPS, version="standard", n_classes=10,
                                    seed=0)
    with torch.no_grad():
        theirs = (model(other(x, y)).argmax(1) == y).float().mean().item()
    # 0.5 points on N = 40 examples: the same examples broken
    assert abs(ours - theirs) <= 0.005


def test_a_bad_autoattack_in_a_config_fails_before_the_run(monkeypatch):
    import importlib.util

    from helpers import tiny

    from robustlr import config, experiment

    def load(final):  # experiment builds every spec a config names (config checks its shape)
        return experiment.from_mapping(tiny(evaluation={"attack": "pgd(eps=0.1, steps=2)", "final": [final]}))

    with pytest.raises(config.ConfigError, match=r"^evaluation\.final\[0\]: .*norm must be one of"):
        load("autoattack(eps=0.1, norm=l5)")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyautoattack" else real(name, *a))
    with pytest.raises(config.ConfigError, match=r"^evaluation\.final\[0\]: .*pip install pyautoattack"):
        load("autoattack(eps=0.1)")
