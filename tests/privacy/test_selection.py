"""Choosing among private runs (privacy/selection.py): K runs compose as one longer run through
the accountant, report-noisy-max is the exponential mechanism at the scale its epsilon needs,
and a choice on public data costs nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robustlr.privacy import epsilon
from robustlr.privacy.selection import (
    basic_candidates_entry,
    candidates_entry,
    choice_entry,
    compose_runs,
    report_noisy_max,
)

Q, DELTA = 0.05, 1e-5


@pytest.mark.parametrize("runs", [2, 6])
def test_k_runs_of_one_history_compose_as_that_history_repeated_k_times(runs):
    scheduled = [(1.4, Q, 20), (0.9, Q, 30)]  # a noise schedule's two levels
    noise = np.concatenate([np.full(20, 1.4), np.full(30, 0.9)])
    composed = compose_runs([scheduled] * runs, delta=DELTA)
    repeated = epsilon(sample_rate=Q, noise_multiplier=np.tile(noise, runs), steps=50 * runs,
                       delta=DELTA)
    one = epsilon(sample_rate=Q, noise_multiplier=noise, steps=50, delta=DELTA)
    assert composed == pytest.approx(repeated, rel=1e-9)
    assert one < composed < runs * one  # dearer than one run, tighter than adding them up


def test_runs_at_several_sample_rates_compose_by_rdp_above_each_run():
    a, b = [(1.0, 0.05, 40)], [(1.0, 0.02, 40)]
    both = compose_runs([a, b], delta=DELTA)
    rdp_a = epsilon(sample_rate=0.05, noise_multiplier=1.0, steps=40, delta=DELTA, accountant="rdp")
    assert rdp_a < both < rdp_a + epsilon(sample_rate=0.02, noise_multiplier=1.0, steps=40,
                                          delta=DELTA, accountant="rdp")


def test_composition_refuses_an_approximation_and_has_no_bound_without_noise():
    with pytest.raises(ValueError, match="accountant must be one of"):
        compose_runs([[(1.0, Q, 10)]], delta=DELTA, accountant="gdp")
    assert compose_runs([[(1.0, Q, 10)], [(0.0, Q, 1)]], delta=DELTA) == math.inf
    assert compose_runs([], delta=DELTA) == 0.0


def test_the_candidates_entry_states_the_runs_and_falls_back_to_adding_up():
    entry = candidates_entry([[(1.0, Q, 10)]] * 3, delta=DELTA)
    assert entry.mechanism == "composition" and entry.detail["runs"] == 3
    assert entry.epsilon == compose_runs([[(1.0, Q, 10)]] * 3, delta=DELTA)
    basic = basic_candidates_entry([2.5, 2.5], [1e-5, 1e-5])
    assert (basic.epsilon, basic.delta, basic.detail["runs"]) == (5.0, 2e-5, 2)


def test_report_noisy_max_finds_a_clear_best_and_is_reproducible():
    scores = [120.0, 180.0, 150.0]  # gaps of 30 counts against a Gumbel scale of 2
    picks = [report_noisy_max(scores, epsilon=1.0, sensitivity=1.0,
                              rng=np.random.default_rng(seed)) for seed in range(300)]
    assert picks.count(1) >= 299
    again = [report_noisy_max(scores, epsilon=1.0, sensitivity=1.0,
                              rng=np.random.default_rng(seed)) for seed in range(300)]
    assert again == picks


def test_report_noisy_max_is_noisy_at_the_scale_its_epsilon_needs():
    # Two candidates gap g apart, Gumbel scale b = 2 * sensitivity / epsilon: the worse one
    # wins with probability 1 / (1 + exp(g / b)) (the exponential mechanism's odds).
    rng = np.random.default_rng(0)
    draws = 20_000
    wrong = sum(report_noisy_max([3.0, 0.0], epsilon=1.0, sensitivity=1.5, rng=rng)
                for _ in range(draws)) / draws
    expected = 1 / (1 + math.exp(3.0 / 3.0))
    assert wrong == pytest.approx(expected, abs=4 * math.sqrt(expected / draws))
    tied = {report_noisy_max([5.0, 5.0, 5.0], epsilon=1.0, sensitivity=1.0, rng=rng)
            for _ in range(60)}
    assert tied == {0, 1, 2}


@pytest.mark.parametrize("bad", [dict(scores=[]), dict(scores=[1.0, math.nan]),
                                 dict(scores=[1.0], epsilon=0.0),
                                 dict(scores=[1.0], sensitivity=0.0)])
def test_report_noisy_max_refuses_what_has_no_guarantee(bad):
    arguments = {"epsilon": 1.0, "sensitivity": 1.0, **bad}
    with pytest.raises(ValueError):
        report_noisy_max(rng=np.random.default_rng(0), **arguments)


def test_a_choice_on_public_data_costs_nothing_and_an_exact_private_one_is_unbounded():
    public = choice_entry("lr_choice", candidates=2, epsilon=1.0, public=True)
    assert (public.mechanism, public.epsilon) == ("public", 0.0)
    noisy = choice_entry("lr_choice", candidates=2, epsilon=0.5)
    assert (noisy.mechanism, noisy.epsilon, noisy.detail["candidates"]) == \
        ("report_noisy_max", 0.5, 2)
    exact = choice_entry("lr_choice", candidates=2, epsilon=None)
    assert (exact.mechanism, exact.epsilon) == ("none", math.inf)
