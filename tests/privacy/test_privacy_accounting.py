"""privacy.epsilon / calibrate / BudgetGuard against Google's dp_accounting and the cap."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import robustlr.privacy as privacy
from robustlr.privacy import BudgetGuard, calibrate, epsilon

dpa = pytest.importorskip("dp_accounting")
DELTA = 1e-5


def _event(q: float, schedule: list[tuple[float, int]]):
    parts = [dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(s)), n)
             for s, n in schedule]
    return dpa.ComposedDpEvent(parts)


CASES = {  # q, [(sigma, steps)]: constant and scheduled noise
    "constant": (0.01, [(1.1, 2000)]),
    "scheduled": (0.02, [(2.0, 500), (1.0, 500)]),
}


def test_import_resolves_to_this_repository():
    assert pathlib.Path(privacy.__file__).parent.parent == pathlib.Path(__file__).parents[2]


@pytest.mark.parametrize("case", CASES)
def test_rdp_matches_dp_accounting(case):
    q, schedule = CASES[case]
    noise = np.concatenate([np.full(n, s) for s, n in schedule])
    ours = epsilon(sample_rate=q, noise_multiplier=noise, steps=len(noise), delta=DELTA,
                   accountant="rdp")
    ref = dpa.rdp.RdpAccountant()
    ref.compose(_event(q, schedule))
    assert ours == pytest.approx(ref.get_epsilon(DELTA), rel=0.005)


@pytest.mark.parametrize("case", CASES)
def test_prv_matches_dp_accounting_pld(case):
    q, schedule = CASES[case]
    noise = np.concatenate([np.full(n, s) for s, n in schedule])
    ours = epsilon(sample_rate=q, noise_multiplier=noise, steps=len(noise), delta=DELTA)
    ref = dpa.pld.PLDAccountant()
    ref.compose(_event(q, schedule))
    assert ours == pytest.approx(ref.get_epsilon(DELTA), rel=0.02)


def test_scalar_equals_constant_sequence_and_zero_steps():
    a = epsilon(sample_rate=0.01, noise_multiplier=1.0, steps=300, delta=DELTA, accountant="rdp")
    b = epsilon(sample_rate=0.01, noise_multiplier=[1.0] * 300, steps=300, delta=DELTA,
                accountant="rdp")
    assert a == b
    assert epsilon(sample_rate=0.01, noise_multiplier=1.0, steps=0, delta=DELTA) == 0.0


def test_many_distinct_values_are_rounded_down_conservatively():
    noise = np.linspace(0.8, 2.0, 60)  # 60 distinct values -> rounded onto <= 12 levels
    quantised = epsilon(sample_rate=0.01, noise_multiplier=noise, steps=60, delta=DELTA,
                        accountant="rdp", max_levels=12)
    exact = epsilon(sample_rate=0.01, noise_multiplier=noise, steps=60, delta=DELTA,
                    accountant="rdp")
    assert exact <= quantised <= exact * 1.15


def test_gdp_warns_that_it_is_not_a_bound():
    with pytest.warns(UserWarning, match="approximation, not an upper bound"):
        epsilon(sample_rate=0.01, noise_multiplier=1.0, steps=100, delta=DELTA, accountant="gdp")


@pytest.mark.parametrize("field, kwargs", [
    ("sample_rate", dict(sample_rate=0.0)), ("sample_rate", dict(sample_rate=1.5)),
    ("steps", dict(steps=-1)), ("delta", dict(delta=0.0)), ("delta", dict(delta=1.0)),
    ("accountant", dict(accountant="moments")), ("noise_multiplier", dict(noise_multiplier=[1.0])),
    ("noise_multiplier", dict(noise_multiplier=0.0)),
    ("noise_multiplier", dict(noise_multiplier=[1.0] * 9 + [float("nan")])),
    ("noise_multiplier", dict(noise_multiplier=[1.0] * 9 + [float("inf")])),
])
def test_bad_inputs_name_the_field(field, kwargs):
    args = dict(sample_rate=0.01, noise_multiplier=1.0, steps=10, delta=DELTA) | kwargs
    with pytest.raises(ValueError, match=field):
        epsilon(**args)


AGGRESSIVE = staticmethod(lambda t: 3.0 if t < 0.5 else 0.4)  # much noise, then little


@pytest.mark.parametrize("accountant, profile", [("prv", None), ("prv", AGGRESSIVE),
                                                 ("rdp", lambda t: 2.0 - 1.7 * t)])
def test_calibrate_lands_just_below_target(accountant, profile):
    q, steps, target = 0.02, 500, 2.0
    sigma = calibrate(target_epsilon=target, sample_rate=q, steps=steps, delta=DELTA,
                      accountant=accountant, noise_profile=profile, tolerance=0.01)
    noise = sigma * (np.array([profile(s / steps) for s in range(steps)]) if profile else 1.0)
    spent = epsilon(sample_rate=q, noise_multiplier=noise if profile else sigma, steps=steps,
                    delta=DELTA, accountant=accountant)
    assert target * 0.99 <= spent <= target


def test_guard_never_allows_a_step_past_the_cap_without_a_plan():
    guard = BudgetGuard(max_epsilon=2.0, delta=DELTA, sample_rate=0.01, accountant="rdp")
    taken = []
    for step in range(6000):  # step decay of the noise, unknown to the guard
        sigma = (3.0, 1.5, 1.0)[min(step // 300, 2)]
        if not guard.allows(sigma):
            break
        guard.record(sigma)
        taken.append(sigma)
    assert 600 < len(taken) < 6000
    spent = epsilon(sample_rate=0.01, noise_multiplier=taken, steps=len(taken), delta=DELTA,
                    accountant="rdp")
    assert spent == pytest.approx(guard.spent()) and spent <= 2.0
    assert epsilon(sample_rate=0.01, noise_multiplier=taken + [sigma], steps=len(taken) + 1,
                   delta=DELTA, accountant="rdp") > 2.0  # the refused step would overspend
    assert guard.evaluations < 120


def test_guard_prv_with_a_planned_schedule_is_cheap_and_exact_at_the_cap():
    q, cap = 0.02, 1.5
    schedule = np.where(np.arange(3000) < 300, 2.5, 0.9)  # aggressive drop after 300 steps
    guard = BudgetGuard(max_epsilon=cap, delta=DELTA, sample_rate=q, accountant="prv")
    guard.plan_steps(schedule)
    taken = 0
    for sigma in schedule:
        if not guard.allows(float(sigma)):
            break
        guard.record(float(sigma))
        taken += 1
    assert 300 < taken < 3000
    assert guard.spent() <= cap
    beyond = epsilon(sample_rate=q, noise_multiplier=schedule[:taken + 1], steps=taken + 1,
                     delta=DELTA)
    assert beyond > cap - guard.margin  # stopped within PRV's error margin of the cap
    assert guard.evaluations < 60  # thousands of steps, a few dozen accountant calls
