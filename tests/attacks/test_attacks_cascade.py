"""Cascade evaluation and the sanity checks."""

from __future__ import annotations

import re

import pytest
import torch

import robustlr.attacks.sanity as sanity
from robustlr.attacks import FGSM, PGD, cascade


def test_cascade_numbers_non_increasing_and_recorded(digits_cnn, digits_tensors):
    _, _, x, y = digits_tensors
    result = cascade(digits_cnn, x, y, [("fgsm", FGSM(eps=0.05)), ("pgd", PGD(eps=0.1, steps=5)),
                                        ("pgd_strong", PGD(eps=0.1, steps=10, restarts=2))],
                     batch_size=128)
    names = [name for name, _ in result.steps]
    accs = [result.clean_acc] + [acc for _, acc in result.steps]
    assert names == ["fgsm", "pgd", "pgd_strong"]
    assert accs[0] > accs[-1]
    assert result.robust_acc == accs[-1] == result.correct.float().mean().item()
    assert result.correct.dtype == torch.bool and result.correct.shape == y.shape
    counts = torch.bincount(y, minlength=10).float()
    assert len(result.robust_per_class) == 10
    weighted = (torch.tensor(result.robust_per_class) * counts).sum() / counts.sum()
    assert abs(weighted.item() - result.robust_acc) < 1e-6


def test_cascade_attacks_only_points_still_correct(digits_cnn, digits_tensors):
    _, _, x, y = digits_tensors
    seen: list[torch.Tensor] = []

    def spy(model, xb, yb):
        seen.append((model(xb).argmax(1) == yb).all())
        assert len(xb) <= 50
        return PGD(eps=0.1, steps=3)(model, xb, yb)

    digits_cnn.train()
    try:
        result = cascade(digits_cnn, x, y, [("a", spy), ("b", spy)], batch_size=50)
        assert [name for name, _ in result.steps] == ["a", "b"]
        assert digits_cnn.training  # modes restored
    finally:
        digits_cnn.eval()
    assert all(seen) and len(seen) > 0


def _fooled(model, attack, x, y) -> torch.Tensor:
    with torch.no_grad():
        return model(attack(model, x, y)).argmax(1) != y


def test_cascade_equals_every_attack_run_on_every_point(digits_cnn, digits_tensors):
    """Robust after step k = correct on clean inputs and fooled by none of attacks 1..k, each
    attack run once on the whole set. Deterministic attacks (no random start), so the only
    difference is batching: allow one example of float noise at a decision boundary."""
    _, _, x, y = digits_tensors
    attacks = [("fgsm", FGSM(eps=0.05)), ("pgd", PGD(eps=0.08, steps=5, random_start=False))]
    result = cascade(digits_cnn, x, y, attacks, batch_size=64)
    with torch.no_grad():
        robust = digits_cnn(x).argmax(1) == y
    assert result.clean_acc == robust.float().mean().item()
    for (name, attack), (step, acc) in zip(attacks, result.steps):
        robust &= ~_fooled(digits_cnn, attack, x, y)
        assert step == name
        assert abs(acc - robust.float().mean().item()) <= 1 / len(y) + 1e-9
    assert (result.correct != robust).sum() <= 1


def test_cascade_without_attacks_is_clean_accuracy(digits_cnn, digits_tensors):
    _, _, x, y = digits_tensors
    result = cascade(digits_cnn, x, y, [])
    assert result.steps == [] and result.robust_acc == result.clean_acc > 0.9


def test_sanity_checks_fire_on_bad_numbers():
    assert sanity.check_strength_order([("pgd10", 0.40), ("pgd50", 0.45)])
    assert sanity.check_strength_order([("pgd10", 0.45), ("pgd50", 0.40)]) == []
    assert sanity.check_eps_monotone([(0.1, 0.5), (0.2, 0.6), (0.05, 0.7)])
    assert sanity.check_eps_monotone([(0.2, 0.3), (0.1, 0.5)]) == []
    assert sanity.check_black_box_gap(0.50, 0.30)
    assert sanity.check_black_box_gap(0.30, 0.32) == []
    assert all(isinstance(w, str) for w in sanity.check_black_box_gap(0.5, 0.3))


def test_eps_zero_check(digits_cnn, digits_tensors, monkeypatch):
    _, _, x, y = digits_tensors
    assert sanity.check_eps_zero(digits_cnn, x[:20], y[:20]) == []
    monkeypatch.setattr(sanity, "pgd", lambda model, x, y, **kw: (x + 0.01).clamp(0, 1))
    assert sanity.check_eps_zero(digits_cnn, x[:20], y[:20])


def test_run_checks_quiet_on_a_plain_model(digits_cnn, digits_tensors):
    _, _, x, y = digits_tensors
    assert sanity.run_checks(digits_cnn, x[:100], y[:100], eps=0.1, steps=3,
                             square_queries=30) == []


# --- batching, validation and edge cases on a fixed linear model (milliseconds) ---------------

def _linear_and_data(n: int):
    """A fixed linear model over 4 features and 3 classes, and n inputs it classifies
    correctly (labels are its own predictions)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x = torch.rand(n, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def test_cascade_attacks_in_batches_of_500_by_default():
    model, x, y = _linear_and_data(1203)
    sizes: list[int] = []

    def spy(model, xb, yb):
        sizes.append(len(xb))
        return xb

    result = cascade(model, x, y, [("spy", spy)])
    assert sizes == [500, 500, 203]
    assert result.clean_acc == result.robust_acc == 1.0
    sizes.clear()
    cascade(model, x[:3], y[:3], [("spy", spy)], batch_size=1)  # the smallest batch allowed
    assert sizes == [1, 1, 1]


def test_cascade_rejects_a_batch_size_under_one():
    model, x, y = _linear_and_data(3)
    with pytest.raises(ValueError, match=r"^batch_size must be >= 1, got 0$"):
        cascade(model, x, y, [], batch_size=0)


def test_cascade_names_an_attack_that_returns_the_wrong_shape():
    model, x, y = _linear_and_data(3)
    with pytest.raises(ValueError, match=re.escape("attack 'bad' returned shape (3, 5), "
                                                   "expected (3, 4)") + "$"):
        cascade(model, x, y, [("bad", lambda model, xb, yb: torch.zeros(len(xb), 5))])


def test_cascade_per_class_accuracy_of_an_absent_class_is_nan():
    # undefined, not 0: a class with no examples in the set was never attacked
    model, x, y = _linear_and_data(0)
    result = cascade(model, x, y, [("pgd", PGD(eps=0.1, steps=2))])
    assert [name for name, _ in result.steps] == ["pgd"] and result.correct.shape == (0,)
    assert len(result.robust_per_class) == 3 and all(a != a for a in result.robust_per_class)
