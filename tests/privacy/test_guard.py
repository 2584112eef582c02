"""BudgetGuard's front door, its bookkeeping and its resume state: exact error messages, the
default accountant and margin, the accountant its epsilon is composed with, and a state_dict
round trip after which a resumed guard decides every step as the uninterrupted one does."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from robustlr.privacy import BudgetGuard, epsilon
from robustlr.privacy.accounting import MAX_LEVELS
from robustlr.privacy.accounting.composition import EPS_ERROR
from robustlr.privacy.accounting.guard import MAX_PLAN_FIRST

DELTA = 1e-5
FRESH = {"steps": [], "plan": [], "certified": 0, "used": 0, "near_cap": False}


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_epsilon=0), "max_epsilon must be > 0, got 0"),
    (dict(max_epsilon=-1.5), "max_epsilon must be > 0, got -1.5"),
    (dict(accountant="gdp"), "accountant must be one of ['prv', 'rdp'] (an upper bound; gdp is "
                             "an estimate and never stops a run), got 'gdp'"),
    (dict(sample_rate=0.0), "sample_rate must be in (0, 1], got 0.0"),
])
def test_bad_arguments_raise_the_exact_message(kwargs, message):
    args = dict(max_epsilon=1.0, delta=DELTA, sample_rate=0.01) | kwargs
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        BudgetGuard(**args)


def test_a_fresh_guard_defaults_to_prv_with_its_margin_and_has_spent_nothing():
    guard = BudgetGuard(max_epsilon=0.5, delta=DELTA, sample_rate=0.01)  # a cap below 1 is fine
    assert guard.accountant == "prv" and guard.max_levels == MAX_LEVELS
    assert guard.margin == 2 * EPS_ERROR > 0
    assert BudgetGuard(max_epsilon=0.5, delta=DELTA, sample_rate=0.01,
                       accountant="rdp").margin == 0.0
    assert guard.state_dict() == FRESH and guard.state_dict()["near_cap"] is False
    assert guard.evaluations == 0
    assert guard.steps == 0 and guard.spent() == 0.0 and guard.noise_counts() == Counter()
    assert guard.evaluations == 1


def test_steps_noise_counts_and_spent_are_those_of_the_recorded_steps():
    guard = BudgetGuard(max_epsilon=50.0, delta=DELTA, sample_rate=0.01, accountant="rdp")
    taken = [2.0, 1.0, 2.0, 1.5, 2.0]
    for sigma in taken:
        guard.record(sigma)
    assert guard.noise_counts() == Counter({2.0: 3, 1.0: 1, 1.5: 1})
    assert guard.steps == 5 and guard.state_dict()["steps"] == taken
    expected = epsilon(sample_rate=0.01, noise_multiplier=taken, steps=5, delta=DELTA,
                       accountant="rdp")
    assert guard.spent() == pytest.approx(expected, rel=1e-12)
    assert guard.spent() == guard.spent() and guard.evaluations == 1  # cached
    guard.record(1.0)
    assert guard.spent() > expected and guard.evaluations == 2  # the cache follows the steps


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_spent_composes_with_the_guards_own_accountant_and_its_rounding(accountant):
    # 20 distinct values: more than RDP's 12 levels, fewer than PRV's 256, so each accountant
    # rounds differently and a guard composing with the other's rounding is caught
    taken = list(np.linspace(1.0, 3.0, 20))
    guard = BudgetGuard(max_epsilon=50.0, delta=DELTA, sample_rate=0.01, accountant=accountant)
    for sigma in taken:
        guard.record(sigma)
    expected = epsilon(sample_rate=0.01, noise_multiplier=taken, steps=20, delta=DELTA,
                       accountant=accountant)
    assert guard.spent() == pytest.approx(expected, rel=1e-9)


# a planned stretch, a drop that leaves the plan (a renewed certificate), then the cap
NOISE = np.concatenate([np.full(10, 3.0), np.full(10, 1.5), np.full(20, 1.0)])


def _guard() -> BudgetGuard:
    guard = BudgetGuard(max_epsilon=1.5, delta=DELTA, sample_rate=0.05, accountant="rdp")
    guard.plan_steps(NOISE[:10])
    return guard


def _run(guard: BudgetGuard, noise) -> list[bool]:
    """Offer each sigma, recording admitted steps, until the first refusal (as the DP regime
    stops); the decisions."""
    decisions = []
    for sigma in noise:
        decisions.append(guard.allows(float(sigma)))
        if not decisions[-1]:
            break
        guard.record(float(sigma))
    return decisions


@pytest.fixture(scope="module")
def uninterrupted():
    guard = _guard()
    decisions = _run(guard, NOISE)
    assert decisions[-1] is False and 15 < len(decisions) < len(NOISE)  # the cap was reached
    return decisions, guard.state_dict(), guard.spent()


@pytest.mark.parametrize("cut", [5, "cap"])  # inside the plan; after the refusal, near the cap
def test_a_resumed_guard_decides_every_step_as_the_uninterrupted_one(uninterrupted, cut):
    reference, final_state, final_spent = uninterrupted
    cut = len(reference) if cut == "cap" else cut
    first = _guard()
    head = _run(first, NOISE[:cut])
    state = first.state_dict()
    assert all(type(state[k]) is list for k in ("steps", "plan"))  # plain lists and numbers
    assert state["steps"] == [float(s) for s in NOISE[:cut]][:len(state["steps"])]

    resumed = BudgetGuard(max_epsilon=1.5, delta=DELTA, sample_rate=0.05, accountant="rdp")
    for _ in state["steps"]:  # a cached epsilon for the same step count, from other noise
        resumed.record(0.5)
    stale = resumed.spent()
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state and resumed.steps == first.steps
    assert resumed.spent() == pytest.approx(first.spent(), rel=1e-12) != stale
    if cut == len(reference):
        assert head == reference and state["near_cap"] is True
        assert resumed.allows(float(NOISE[cut - 1])) is False  # still refused after resume
        return
    tail = _run(resumed, NOISE[len(head):])
    assert head + tail == reference
    assert resumed.state_dict() == final_state and resumed.spent() == final_spent


@pytest.mark.parametrize("plan, shape", [([[2.0, 2.0]], "(1, 2)"), ([2.0, 0.0], "(2,)"),
                                         ([2.0, -1.0], "(2,)")])
def test_a_plan_that_is_not_positive_and_1d_is_refused_in_one_line(plan, shape):
    guard = BudgetGuard(max_epsilon=5.0, delta=DELTA, sample_rate=0.01, accountant="rdp")
    message = f"noise_multipliers must be a 1-d sequence of positive floats, got {shape}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        guard.plan_steps(plan)


def test_a_plan_spending_exactly_the_cap_is_certified_whole_in_one_call():
    plan = [2.0] * 10
    probe = BudgetGuard(max_epsilon=50.0, delta=DELTA, sample_rate=0.05, accountant="rdp")
    exact = probe._eps(plan)
    guard = BudgetGuard(max_epsilon=exact, delta=DELTA, sample_rate=0.05, accountant="rdp")
    assert guard.plan_steps(plan) == 10 and guard.evaluations == 1  # epsilon == cap fits
    assert all(guard.allows(2.0) and guard.record(2.0) is None for _ in range(10))
    assert guard.spent() == exact and not guard.allows(2.0)


def test_a_plan_of_the_longest_tried_whole_length_costs_one_accountant_call():
    guard = BudgetGuard(max_epsilon=1e6, delta=DELTA, sample_rate=0.001, accountant="rdp")
    assert guard.plan_steps(np.full(MAX_PLAN_FIRST, 50.0)) == MAX_PLAN_FIRST
    assert guard.evaluations == 1


def test_integer_noise_is_kept_as_floats_in_the_plan_and_the_state():
    guard = BudgetGuard(max_epsilon=50.0, delta=DELTA, sample_rate=0.01, accountant="rdp")
    guard.plan_steps([3, 3])
    assert [type(v) for v in guard.state_dict()["plan"]] == [float, float]
    state = dict(FRESH, plan=[3, 3], certified=2)  # as a JSON checkpoint may hold them
    guard.load_state_dict(state)
    assert [type(v) for v in guard.state_dict()["plan"]] == [float, float]


def _exact_cap(steps: int, sigma: float = 2.0, q: float = 0.05) -> float:
    """The epsilon of ``steps`` steps at ``sigma``, as the guard composes it (bit for bit)."""
    return BudgetGuard(max_epsilon=50.0, delta=DELTA, sample_rate=q,
                       accountant="rdp")._eps([sigma] * steps)


@pytest.mark.parametrize("length, allowed, calls", [(10, 9, 7), (7, 6, 6)])
def test_a_plan_that_does_not_fit_whole_is_cut_at_the_last_step_that_fits(length, allowed,
                                                                         calls):
    guard = BudgetGuard(max_epsilon=_exact_cap(allowed), delta=DELTA, sample_rate=0.05,
                        accountant="rdp")
    assert guard.plan_steps([2.0] * length) == allowed
    # the whole plan, then k = 1, 2, 4, 8 while below the length + 1, then bisection
    assert guard.evaluations == calls
    assert guard.state_dict() | {"plan": None} == {"steps": [], "plan": None,
                                                    "certified": allowed, "used": 0,
                                                    "near_cap": False}


def test_a_plan_longer_than_the_whole_first_limit_is_searched_up_to_its_length():
    guard = BudgetGuard(max_epsilon=1e6, delta=DELTA, sample_rate=0.001, accountant="rdp")
    assert guard.plan_steps(np.full(MAX_PLAN_FIRST + 1, 50.0)) == MAX_PLAN_FIRST + 1


def test_a_renewed_certificate_of_one_step_admits_it_without_going_near_the_cap():
    guard = BudgetGuard(max_epsilon=_exact_cap(1), delta=DELTA, sample_rate=0.05,
                        accountant="rdp")
    assert guard.allows(2.0)
    assert guard.state_dict()["certified"] == 1 and guard.state_dict()["near_cap"] is False


def test_near_the_cap_a_step_landing_exactly_on_it_is_admitted():
    guard = BudgetGuard(max_epsilon=_exact_cap(3), delta=DELTA, sample_rate=0.05,
                        accountant="rdp")
    guard.record(2.0)
    guard.record(2.0)
    assert not guard.allows(1.0)  # less noise would pass the cap: no certificate, exact now
    assert guard.state_dict()["near_cap"] is True
    assert guard.allows(2.0)  # epsilon == cap exactly
    guard.record(2.0)
    assert guard.spent() == guard.max_epsilon


def test_steps_are_taken_from_the_start_of_a_fresh_plan():
    guard = BudgetGuard(max_epsilon=50.0, delta=DELTA, sample_rate=0.01, accountant="rdp")
    guard.plan_steps([3.0, 2.0, 1.0])
    assert guard.state_dict()["plan"] == [3.0, 2.0, 1.0]
    assert guard.allows(3.0) and guard.evaluations == 1  # certified: no accountant call
    guard.record(3.0)
    assert guard.state_dict()["plan"] == [2.0, 1.0]  # the next step is the plan's second


@pytest.mark.parametrize("method", ["allows", "record"])
@pytest.mark.parametrize("sigma", [0, -1.0])
def test_a_step_without_positive_noise_is_refused_in_one_line(method, sigma):
    guard = BudgetGuard(max_epsilon=5.0, delta=DELTA, sample_rate=0.01, accountant="rdp")
    message = f"noise_multiplier must be > 0, got {sigma!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        getattr(guard, method)(sigma)


def test_a_step_below_the_plan_leaves_it_and_voids_the_certificate():
    guard = BudgetGuard(max_epsilon=50.0, delta=DELTA, sample_rate=0.01, accountant="rdp")
    guard.plan_steps([3.0, 3.0, 3.0])
    guard.record(3.0)
    assert guard.state_dict()["certified"] == 2  # two planned steps left, both certified
    guard.record(1.0)  # less noise than planned: the rest of the plan is no longer certified
    assert guard.state_dict()["certified"] == 0 and guard.state_dict()["plan"] == []


def test_a_checkpoint_of_a_guard_at_its_cap_keeps_only_the_unused_certificate():
    # at the cap the guard renews its certificate as MAX_CERTIFIED planned steps; a resume
    # checkpoint must not carry them (9.4 MB per checkpoint before this was fixed)
    guard = BudgetGuard(max_epsilon=1.5, delta=DELTA, sample_rate=0.05, accountant="rdp")
    while guard.allows(2.0):
        guard.record(2.0)
    state = guard.state_dict()
    assert len(state["plan"]) == state["certified"] <= 1 and state["near_cap"] is True
    resumed = BudgetGuard(max_epsilon=1.5, delta=DELTA, sample_rate=0.05, accountant="rdp")
    resumed.load_state_dict(state)
    assert resumed.allows(2.0) == guard.allows(2.0) and resumed.spent() == guard.spent()
