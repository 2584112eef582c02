"""privacy.audit_one_run: Steinke, Nasr & Jagielski's one-run bound against its closed form
and a brute-force sum, its level under a known-epsilon mechanism, and the canaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustlr.privacy.audit.one_run import (
    GUESS_FRACTIONS,
    audit,
    epsilon_lower_bound,
    guess,
    mislabeled_canaries,
    p_value,
)


def _brute_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """Theorem 3 of arXiv:2305.08846 written out with exact binomial sums."""
    q = math.exp(eps) / (1 + math.exp(eps))
    pmf = [math.comb(r, k) * q ** k * (1 - q) ** (r - k) for k in range(r + 1)]

    def f(w: int) -> float:  # P[Binomial(r, q) >= w]
        return math.fsum(pmf[max(w, 0):])

    alpha = max((f(v - i) - f(v)) / i for i in range(1, m + 1))
    return min(f(v) + 2 * m * delta * alpha, 1.0)


@pytest.mark.parametrize(("m", "r", "v", "eps", "delta"), [
    (40, 30, 24, 0.7, 1e-3), (40, 40, 40, 2.0, 1e-2), (25, 10, 3, 0.1, 0.05),
    (60, 20, 18, 1.5, 0.0), (30, 30, 16, 0.0, 1e-4)])
def test_p_value_matches_the_theorem_summed_by_hand(m, r, v, eps, delta):
    assert p_value(m=m, guesses=r, correct=v, epsilon=eps, delta=delta) == pytest.approx(
        _brute_p_value(m, r, v, eps, delta), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("r", [10, 100, 1000])
def test_all_correct_without_delta_is_the_closed_form(r):
    # P[Binomial(r, q) >= r] = q^r = beta  =>  eps = logit(beta^(1/r))
    q = 0.05 ** (1 / r)
    bound = epsilon_lower_bound(m=r, guesses=r, correct=r, delta=0.0, beta=0.05)
    assert bound == pytest.approx(math.log(q / (1 - q)), abs=1e-6)


def test_many_correct_guesses_give_a_large_bound_and_chance_gives_none():
    assert epsilon_lower_bound(m=1000, guesses=1000, correct=1000, delta=1e-5) > 5.5
    assert epsilon_lower_bound(m=1000, guesses=1000, correct=500, delta=1e-5) == 0.0
    assert epsilon_lower_bound(m=1000, guesses=1000, correct=520, delta=1e-5) == 0.0  # z < 1.65
    assert epsilon_lower_bound(m=1000, guesses=1000, correct=600, delta=1e-5) > 0.25


def test_the_bound_grows_with_correct_guesses_and_shrinks_with_delta_and_confidence():
    bounds = [epsilon_lower_bound(m=500, guesses=200, correct=v, delta=1e-4)
              for v in range(100, 201)]
    assert all(b <= c for b, c in zip(bounds, bounds[1:]))
    positive = [b for b in bounds if b > 0]
    assert len(positive) > 50 and all(b < c for b, c in zip(positive, positive[1:]))
    without, small, large = (epsilon_lower_bound(m=500, guesses=200, correct=190, delta=d)
                             for d in (0.0, 1e-5, 1e-3))
    assert without > small > large > 0
    assert (epsilon_lower_bound(m=500, guesses=200, correct=190, delta=0, beta=0.01)
            < epsilon_lower_bound(m=500, guesses=200, correct=190, delta=0, beta=0.1))


def _randomized_response(eps: float, m: int, rng: np.random.Generator):
    """An eps-DP audit game: each canary's score reveals its bit through randomized response
    (the mechanism the bound is tight for), plus a tie-breaking jitter."""
    included = rng.random(m) < 0.5
    truthful = rng.random(m) < math.exp(eps) / (1 + math.exp(eps))
    scores = np.where(included == truthful, 1.0, -1.0) + 1e-3 * rng.random(m)
    return scores, included


def test_the_bound_exceeds_a_true_epsilon_no_more_often_than_beta():
    rng = np.random.default_rng(0)
    runs, eps = 200, 1.0
    bounds = [audit(*_randomized_response(eps, 200, rng), delta=0.0).epsilon_lower
              for _ in range(runs)]
    # at 95% confidence, at most 5% of the runs may claim more than the truth (binomial
    # mean 10 of 200, sd 3.1): 18 would be 2.6 sd over; the bound is also not vacuous
    assert sum(b > eps for b in bounds) <= 18
    assert np.median(bounds) > 0.3


def test_random_scores_give_a_zero_bound():
    rng = np.random.default_rng(1)
    zero = [audit(rng.normal(size=500), rng.random(500) < 0.5, delta=1e-5).epsilon_lower == 0
            for _ in range(40)]
    assert sum(zero) >= 36


def test_guesses_are_the_top_and_bottom_scores():
    made = guess(np.array([0.3, 0.9, -1.0, 0.5, 0.1, -0.2]), k_plus=2, k_minus=1)
    assert made.tolist() == [0, 1, -1, 1, 0, 0]
    assert guess(np.zeros(4), k_plus=2, k_minus=2).tolist() == [1, 1, -1, -1]
    with pytest.raises(ValueError, match="k_plus"):
        guess(np.zeros(3), k_plus=2, k_minus=2)


def test_the_guess_count_is_paid_for_not_tuned():
    # Perfect separation on the top 20: the 20-guess audit alone would claim more at 95%
    # than the fixed list can once its four looks share the 5% (Bonferroni)
    rng = np.random.default_rng(2)
    included = rng.random(200) < 0.5
    scores = rng.normal(size=200)
    scores[np.flatnonzero(included)[:10]] += 10
    scores[np.flatnonzero(~included)[:10]] -= 10
    result = audit(scores, included, delta=0.0)
    assert (result.guesses, result.correct, result.k_plus, result.k_minus) == (20, 20, 10, 10)
    per_look = (1 - 0.95) / len(GUESS_FRACTIONS)
    assert result.epsilon_lower == pytest.approx(
        epsilon_lower_bound(m=200, guesses=20, correct=20, delta=0.0, beta=per_look))
    assert result.epsilon_lower < epsilon_lower_bound(m=200, guesses=20, correct=20, delta=0.0)


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="correct <= guesses <= m"):
        p_value(m=10, guesses=11, correct=3, epsilon=1.0, delta=0.0)
    with pytest.raises(ValueError, match="beta"):
        epsilon_lower_bound(m=10, guesses=10, correct=3, delta=0.0, beta=1.5)
    with pytest.raises(ValueError, match="inclusion bit"):
        audit(np.zeros(5), np.zeros(4, dtype=bool), delta=0.0)


def test_mislabeled_canaries_have_wrong_labels_and_fair_coins():
    x = torch.arange(2000, dtype=torch.float32).reshape(-1, 1)
    y = torch.arange(2000) % 10
    canaries = mislabeled_canaries(x, y, count=1000, num_classes=10,
                                   generator=torch.Generator().manual_seed(0))
    assert len(set(canaries.index.tolist())) == 1000
    assert torch.equal(canaries.x, x[canaries.index])
    assert bool((canaries.y != y[canaries.index]).all()) and 0 <= int(canaries.y.min())
    assert int(canaries.y.max()) <= 9
    assert 450 <= int(canaries.included.sum()) <= 550
    again = mislabeled_canaries(x, y, count=1000, num_classes=10,
                                generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.included, canaries.included) and torch.equal(again.y, canaries.y)
    with pytest.raises(ValueError, match="canaries"):
        mislabeled_canaries(x, y, count=2001, num_classes=10, generator=torch.Generator())
