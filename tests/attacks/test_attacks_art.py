"""ART adapters: each runs on the digits model, respects its budget, seeds and modes."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from torch import nn

from robustlr.attacks import (
    APGDCE,
    EVASION_ATTACKS,
    FGSM,
    PGD,
    AutoAttackART,
    CarliniWagnerL2,
    DeepFool,
    Square,
    fgsm,
    pgd,
)

FAST = {
    "apgd_ce": APGDCE(eps=0.1, steps=10),
    "autoattack_art": AutoAttackART(eps=0.1, steps=5, square_queries=50),
    "cw_l2": CarliniWagnerL2(steps=5, binary_search_steps=1, learning_rate=0.1, initial_const=1.0),
    "square": Square(eps=0.2, queries=60),
    "deepfool": DeepFool(steps=10, nb_grads=3),
}


@pytest.fixture(scope="module")
def small(digits_tensors):
    _, _, x_test, y_test = digits_tensors
    return x_test[:32], y_test[:32]


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("name", sorted(FAST))
def test_adapter_reduces_accuracy_within_budget(digits_cnn, small, name):
    x, y = small
    state = np.random.get_state()[1].copy()
    x_adv = FAST[name](digits_cnn, x, y)
    assert np.array_equal(np.random.get_state()[1], state)  # numpy's global RNG put back
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert 0 <= x_adv.min() and x_adv.max() <= 1
    assert accuracy(digits_cnn, x_adv, y) < accuracy(digits_cnn, x, y) - 0.2
    eps = getattr(FAST[name], "eps", None)
    if eps is not None:
        assert (x_adv - x).abs().max() <= eps + 1e-6


def test_minimal_norm_attacks_at_a_budget(digits_cnn, small):
    x, y = small
    free = DeepFool(steps=10, nb_grads=3)(digits_cnn, x, y)
    bounded = DeepFool(steps=10, nb_grads=3, eps=0.5)(digits_cnn, x, y)
    assert (bounded - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-6
    assert accuracy(digits_cnn, bounded, y) >= accuracy(digits_cnn, free, y)


def test_seeded_and_restores_train_mode(digits_cnn, small):
    x, y = small
    digits_cnn.train()
    try:
        a = Square(eps=0.1, queries=30, seed=4)(digits_cnn, x, y)
        assert digits_cnn.training
    finally:
        digits_cnn.eval()
    assert torch.equal(a, Square(eps=0.1, queries=30, seed=4)(digits_cnn, x, y))


@pytest.mark.parametrize("name", sorted(FAST))
def test_adapters_accept_empty_batch(digits_cnn, name):
    x, y = torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.int64)
    assert FAST[name](digits_cnn, x, y).shape == x.shape


def test_registry_names_and_signatures():
    assert set(EVASION_ATTACKS) == {"pgd", "fgsm", "apgd_ce", "autoattack", "autoattack_art", "cw_l2",
                                    "square", "deepfool"}
    required = {"eps"}  # only an attack's budget may be required
    for name, cls in EVASION_ATTACKS.items():
        for p in inspect.signature(cls).parameters.values():
            assert p.kind is p.KEYWORD_ONLY, (name, p.name)
            assert p.annotation is not p.empty, (name, p.name)
            assert p.default is not p.empty or p.name in required, (name, p.name)


BAD = [
    (PGD, {"eps": -1}, "eps"), (PGD, {"norm": "l1"}, "norm"), (PGD, {"steps": 0}, "steps"),
    (PGD, {"restarts": 0}, "restarts"), (PGD, {"step_size": -0.1}, "step_size"),
    (FGSM, {"eps": -0.1}, "eps"), (FGSM, {"eps": float("nan")}, "eps"),
    (APGDCE, {"eps": 0.1, "norm": "l3"}, "norm"), (APGDCE, {"eps": 0.1, "steps": 0}, "steps"),
    (Square, {"eps": 0.1, "queries": 0}, "queries"), (Square, {"eps": -1}, "eps"),
    (AutoAttackART, {"eps": 0.1, "square_queries": -5}, "square_queries"),
    (CarliniWagnerL2, {"learning_rate": 0}, "learning_rate"), (CarliniWagnerL2, {"eps": -1}, "eps"),
    (DeepFool, {"overshoot": -1}, "overshoot"), (DeepFool, {"batch_size": 0}, "batch_size"),
]


@pytest.mark.parametrize("cls,kwargs,param", BAD)
def test_bad_parameters_name_the_parameter(cls, kwargs, param):
    with pytest.raises(ValueError, match=rf"^{param} must be"):
        cls(**kwargs)


def test_bad_parameters_in_functions():
    model, x, y = nn.Flatten(), torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match="^norm must be one of linf, l2"):
        pgd(model, x, y, eps=0.1, step_size=0.1, steps=1, norm="l1")
    with pytest.raises(ValueError, match="^eps must be >= 0, got -1"):
        fgsm(model, x, y, eps=-1)
