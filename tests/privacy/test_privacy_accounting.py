"""privacy.epsilon / calibrate / BudgetGuard against Google's dp_accounting and the cap."""

from __future__ import annotations

import pathlib
import re
import warnings

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


# -- the accounting's pieces at known points (fast; each pins what a mutant would change) ------
from robustlr.privacy.accounting import accountants as accounting  # noqa: E402
from robustlr.privacy.accounting import composition  # noqa: E402


@pytest.mark.parametrize("kwargs, message", [
    (dict(sample_rate=0.0), "sample_rate must be in (0, 1], got 0.0"),
    (dict(steps=1.5), "steps must be an integer >= 0, got 1.5"),
    (dict(steps=-1), "steps must be an integer >= 0, got -1"),
    (dict(delta=1.0), "delta must be in (0, 1), got 1.0"),
    (dict(accountant="moments"), "accountant must be one of ['gdp', 'prv', 'rdp'], got 'moments'"),
    (dict(noise_multiplier=[1.0, 1.0]), "noise_multiplier must be a float or a sequence of length "
                                        "steps=10, got 'sequence of shape (2,)'"),
    (dict(noise_multiplier=[1.0] * 8 + [-2.0, 0.0]), "noise_multiplier must be finite and > 0 at "
                                                     "every step, got np.float64(-2.0)"),
])
def test_bad_inputs_raise_the_exact_message(kwargs, message):
    args = dict(sample_rate=0.01, noise_multiplier=1.0, steps=10, delta=DELTA) | kwargs
    message = message.replace("np.float64(-2.0)", "-2.0") if np.__version__ < "2" else message
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        epsilon(**args)


def test_the_edges_of_the_valid_ranges_are_accepted():
    accounting.validate(sample_rate=1.0, steps=0, delta=1e-12, accountant="rdp")
    accounting.validate(sample_rate=1e-9, steps=10.0, delta=0.999, accountant="gdp")
    assert epsilon(sample_rate=1.0, noise_multiplier=5.0, steps=1, delta=DELTA,
                   accountant="rdp") > 0


def test_noise_schedule_is_one_float_per_step():
    noise = accounting.noise_schedule(2, 3)
    assert noise.dtype == np.float64 and noise.tolist() == [2.0, 2.0, 2.0]
    assert accounting.noise_schedule(np.float32(1.5), 2).tolist() == [1.5, 1.5]
    ints = accounting.noise_schedule([3, 2, 1], 3)
    assert ints.dtype == np.float64 and ints.tolist() == [3.0, 2.0, 1.0]
    assert accounting.noise_schedule(1.0, 0).shape == (0,)


def test_levels_merge_equal_values_and_round_down_onto_a_nested_grid():
    values, counts = accounting.levels(np.array([2.0, 1.0, 2.0]))
    assert values.tolist() == [1.0, 2.0] and counts.tolist() == [1, 2]
    # [1, 2, 4] onto 2 levels: the finest grid coarsened until two points remain, 1 and 4
    values, counts = accounting.levels(np.array([1.0, 2.0, 4.0]), 2)
    assert values == pytest.approx([1.0, 4.0], rel=1e-12) and counts.tolist() == [2, 1]
    values, counts = accounting.levels(np.array([1.0, 2.0, 4.0, 4.0]), 3)
    assert values == pytest.approx([1.0, 2.0, 4.0], rel=1e-12) and counts.tolist() == [1, 1, 2]
    noise = np.linspace(0.7, 3.0, 300)  # more values than levels: each rounded down one step
    values, counts = accounting.levels(noise, 64)  # of the grid 2^9 finest steps apart (4.4%)
    assert 32 < len(values) <= 64 and counts.sum() == 300
    rounded = np.repeat(values, counts)
    assert np.all(rounded <= noise * (1 + 1e-12)) and np.all(rounded > noise * 0.95)
    steps = np.log(values) / (2**9 * accounting._FINEST)
    assert steps == pytest.approx(np.round(steps), abs=1e-6)  # on that grid


def test_rdp_levels_are_a_geometric_grid_from_the_schedules_minimum():
    noise = np.array([1.0, 2.0, 3.0, 4.0])
    assert accounting.history(noise, 0.1, 2, "rdp") == [(1.0, 0.1, 3), (4.0, 0.1, 1)]
    assert accounting.history(noise, 0.1, 3, "rdp") == [(1.0, 0.1, 1), (2.0, 0.1, 2),
                                                        (4.0, 0.1, 1)]
    assert accounting.history(noise, 0.1, 4, "rdp") == [(s, 0.1, 1) for s in (1.0, 2.0, 3.0, 4.0)]
    # anchored at the minimum, not at 1: [2, 4, 6, 8] onto 2 levels is 2 and 8 (ratio 4)
    assert accounting.history(2 * noise, 0.1, 2, "rdp") == [(2.0, 0.1, 3), (8.0, 0.1, 1)]
    assert accounting.history(2 * noise, 0.1, 3, "rdp") == [(2.0, 0.1, 1), (4.0, 0.1, 2),
                                                            (8.0, 0.1, 1)]
    # RDP takes at most RDP_LEVELS, whatever max_levels; PRV takes max_levels
    many = np.linspace(1.0, 2.0, 30)
    hist = accounting.history(many, 0.1, 256, "rdp")
    assert len(hist) == accounting.RDP_LEVELS and hist[0][0] == 1.0 and hist[-1] == (2.0, 0.1, 1)
    assert sum(n for _, _, n in hist) == 30
    assert accounting.history(many, 0.1, 256, "prv") == [(float(s), 0.1, 1) for s in many]
    assert accounting.history(many, 0.1) == accounting.history(many, 0.1, 256, "prv")  # default
    assert len(accounting.history(np.linspace(1.0, 2.0, 100), 0.1, 10, "prv")) <= 10
    entry = accounting.history(np.array([2.0]), 0.25, accountant="gdp")[0]
    assert [type(v) for v in entry] == [float, float, int]


def test_schedule_from_profile_is_sigma_times_the_profile_at_each_step_start():
    assert accounting.schedule_from_profile(2.0, 4, lambda t: 1 + t).tolist() == \
        [2.0, 2.5, 3.0, 3.5]
    constant = accounting.schedule_from_profile(1.5, 3, None)
    assert constant.dtype == np.float64 and constant.tolist() == [1.5, 1.5, 1.5]


def test_epsilon_of_an_empty_history_is_zero_and_prv_is_the_default():
    for accountant in ("prv", "rdp", "gdp"):
        assert accounting.epsilon_of_history([], delta=DELTA, accountant=accountant) == 0.0
    hist = [(1.0, 0.02, 100)]
    assert epsilon(sample_rate=0.02, noise_multiplier=1.0, steps=100, delta=DELTA) == \
        accounting.epsilon_of_history(hist, delta=DELTA, accountant="prv") == \
        composition.compose(np.array([1.0]), np.array([100]), 0.02, delta=DELTA)


def test_prv_falls_back_to_the_rdp_bound_when_its_domain_is_too_large(monkeypatch):
    def too_large(*args, **kwargs):
        raise composition.DomainTooLarge("too many points")

    monkeypatch.setattr(composition, "compose", too_large)
    hist = [(0.8, 0.02, 50), (1.5, 0.02, 50)]
    found = accounting.epsilon_of_history(hist, delta=DELTA, accountant="prv")
    assert found == composition.rdp_bound(np.array([0.8, 1.5]), np.array([50, 50]), 0.02,
                                          delta=DELTA)
    single = accounting.epsilon_of_history([(0.8, 0.02, 50)], delta=DELTA, accountant="prv")
    assert single == composition.rdp_bound(np.array([0.8]), np.array([50]), 0.02, delta=DELTA)


def test_gdp_warns_once_at_the_callers_line_and_takes_one_noise_only():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        epsilon(sample_rate=0.01, noise_multiplier=1.0, steps=10, delta=DELTA, accountant="gdp")
    assert [str(w.message) for w in caught] == [accounting.GDP_WARNING]
    # attributed to the caller, not to a line of the accounting (mutmut adds its own frames)
    assert not caught[0].filename.startswith(str(pathlib.Path(accounting.__file__).parent))
    message = ("noise_multiplier must be constant for accountant='gdp', got '2 distinct values'")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        epsilon(sample_rate=0.01, noise_multiplier=[1.0, 2.0], steps=2, delta=DELTA,
                accountant="gdp")


def test_rdp_at_its_largest_order_stays_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Opacus warns "Optimal order is the largest alpha"
        assert 0 < epsilon(sample_rate=0.001, noise_multiplier=10.0, steps=1, delta=DELTA,
                           accountant="rdp") < 0.2


def test_exactly_max_levels_distinct_values_are_composed_exactly():
    noise = np.array([1.1, 1.3, 1.7, 1.3])
    values, counts = accounting.levels(noise, 3)
    assert values.tolist() == [1.1, 1.3, 1.7] and counts.tolist() == [1, 2, 1]


def test_rdp_silences_only_opacus_largest_order_warning(monkeypatch):
    class Noisy:
        history: list = []

        def get_epsilon(self, *, delta):
            warnings.warn("Optimal order is the largest alpha. Please consider expanding", stacklevel=1)
            warnings.warn("something else", stacklevel=1)
            return 1.0

    monkeypatch.setattr(accounting, "create_accountant", lambda name: Noisy())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert accounting.epsilon_of_history([(1.0, 0.01, 3)], delta=DELTA,
                                             accountant="rdp") == 1.0
    assert [str(w.message) for w in caught] == ["something else"]
