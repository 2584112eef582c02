"""Cascade evaluation and the sanity checks."""

from __future__ import annotations

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
