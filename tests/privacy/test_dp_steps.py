"""The DP regime's step accounting in isolation (a linear model, 60 examples, under a second):
only real optimizer steps are recorded, with the noise they were taken at; epsilon, the
summary and the epoch metrics come from those steps, the config's batch size and N; a cap
refuses the step that would pass it before any noise is set."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from robustlr.privacy import BudgetGuard, epsilon
from robustlr.privacy.accounting import GDP_WARNING
from robustlr.regimes import REGIMES, TrainingSetup
from robustlr.regimes import dp as dp_module

N, BATCH = 60, 12


def prepared(spec: str):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(N, 5), torch.randint(0, 3, (N,))
    model = nn.Linear(5, 3)
    regime = REGIMES.build(spec)
    loader_steps = N // BATCH
    setup = regime.prepare(TrainingSetup(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), loader=None,
        total_steps=2 * loader_steps, epochs=2, dataset_size=N, batch_size=BATCH,
        device=torch.device("cpu"), generator=generator, train_data=(x, y)))
    return regime, setup


def take(regime, setup, progresses, *, skipped=()):
    """Offer one step per progress value; a step whose index is in ``skipped`` is one Opacus
    did not take (a physical batch accumulated). Returns each step()'s answer."""
    taken = []
    batches = iter(setup.loader)
    for i, progress in enumerate(progresses):
        regime.before_step(progress=progress)
        if regime.stop_reason() is not None:
            break
        x, y = next(batches)
        out = regime.losses(setup.model, x, y, progress=progress)
        out["loss"].backward()
        if i in skipped:
            setup.optimizer.zero_grad()
            taken.append(False)
            continue
        taken.append(regime.step(setup.optimizer))
        setup.optimizer.zero_grad()
    return taken


def test_only_real_steps_are_recorded_with_the_noise_they_were_taken_at(monkeypatch):
    regime, setup = prepared("dp(noise_multiplier=2.0, noise_schedule='linear(final=0.5)')")
    real_skip = dp_module.dp_engine.step_was_skipped
    calls = []

    def skipped_second(optimizer):
        calls.append(optimizer)
        return len(calls) == 2 or real_skip(optimizer)

    monkeypatch.setattr(dp_module.dp_engine, "step_was_skipped", skipped_second)
    answers = take(regime, setup, [0.0, 0.25, 0.5])
    assert answers == [True, False, True] and calls == [setup.optimizer] * 3
    expected = [2.0 * regime.noise_profile(p) for p in (0.0, 0.5)]
    assert regime.steps_taken == 2 and regime.noise_history == pytest.approx(expected)
    assert regime.noise_history[0] != regime.noise_history[1]  # the schedule moved
    q, delta = BATCH / N, 0.1 / N
    spent = epsilon(sample_rate=q, noise_multiplier=expected, steps=2, delta=delta)
    assert regime.spent() == pytest.approx(spent, rel=1e-9)
    summary = regime.summary()
    assert summary["sample_rate"] == q and summary["delta"] == delta
    assert summary["dp_steps"] == 2 and summary["epsilon"] == pytest.approx(spent, rel=1e-9)
    assert summary["noise_multiplier"] == 2.0 and summary["max_grad_norm"] == 1.0
    assert summary["accountant"] == "prv" and summary["epsilon_gdp"] is None
    assert summary["target_epsilon"] is None and summary["max_epsilon"] is None
    assert summary["budget_exhausted"] is False and summary["grad_sample_mode"]
    assert summary["model_fixes"] == regime.fixes
    metrics = regime.epoch_metrics()
    assert metrics == {"epsilon": pytest.approx(spent, rel=1e-9),
                       "epsilon_training": pytest.approx(spent, rel=1e-9),
                       "noise_multiplier": regime.sigma, "max_grad_norm": regime.clip}
    assert regime.sigma == pytest.approx(expected[1])


def test_before_step_sets_the_scheduled_noise_and_clipping_on_the_optimizer():
    regime, setup = prepared("dp(noise_multiplier=2.0, max_grad_norm=3.0, "
                             "noise_schedule='linear(final=0.5)', clip_schedule='linear(final=0.1)')")
    regime.before_step(progress=0.5)
    assert regime.sigma == pytest.approx(2.0 * regime.noise_profile(0.5))
    assert regime.clip == pytest.approx(3.0 * regime.clip_profile(0.5))
    assert regime.clip != 3.0 and regime.sigma != 2.0
    assert setup.optimizer.noise_multiplier == regime.sigma
    assert setup.optimizer.max_grad_norm == regime.clip


def test_without_steps_nothing_is_spent_and_without_noise_privacy_is_infinite():
    regime, setup = prepared("dp(noise_multiplier=1.0)")
    assert regime.spent() == 0.0 and regime.summary()["epsilon"] == 0.0
    plain, setup = prepared("dp(noise_multiplier=0, poisson=false)")
    assert take(plain, setup, [0.0]) == [True]
    assert plain.spent() == math.inf and plain.gdp_estimate() is None


def test_rdp_accounting_uses_rdp_and_the_cap_refuses_the_step_that_would_pass_it():
    regime, setup = prepared("dp(noise_multiplier=0.8, max_epsilon=3.0, accountant='rdp')")
    assert isinstance(regime.guard, BudgetGuard) and regime.guard.accountant == "rdp"
    answers = take(regime, setup, [i / 400 for i in range(400)])
    steps = regime.steps_taken
    assert 0 < steps == len(answers) < 400 and all(answers)
    assert regime.stop_reason() == "budget_exhausted" and regime.exhausted
    q, delta = BATCH / N, 0.1 / N
    spent = epsilon(sample_rate=q, noise_multiplier=0.8, steps=steps, delta=delta,
                    accountant="rdp")
    assert regime.spent() == pytest.approx(spent, rel=1e-9) and spent <= 3.0
    assert epsilon(sample_rate=q, noise_multiplier=0.8, steps=steps + 1, delta=delta,
                   accountant="rdp") > 3.0
    assert regime.guard.steps == steps and regime.noise_history == [0.8] * steps
    summary = regime.summary()
    assert summary["accountant"] == "rdp" and summary["max_epsilon"] == 3.0
    assert summary["budget_exhausted"] is True and summary["dp_steps"] == steps


def test_gdp_is_estimated_for_one_constant_noise_only_and_silently():
    regime, setup = prepared("dp(noise_multiplier=1.5, accountant='gdp')")
    assert regime.gdp_estimate() is None  # no step yet
    take(regime, setup, [0.0, 0.5])
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=GDP_WARNING)
        found = regime.gdp_estimate()
    with pytest.warns(UserWarning, match="approximation"):
        expected = epsilon(sample_rate=BATCH / N, noise_multiplier=1.5, steps=2, delta=0.1 / N,
                           accountant="gdp")
    assert found == pytest.approx(expected, rel=1e-12) and regime.summary()["epsilon_gdp"] == found
    assert regime.summary()["accountant"] == "prv"  # the bound stays PRV
    regime.noise_history.append(1.0)  # two distinct values: Opacus' GDP takes one
    assert regime.gdp_estimate() is None
    regime.noise_history[:] = [0.0, 0.0]
    assert regime.gdp_estimate() is None


def test_without_a_cap_epsilon_is_composed_by_the_configured_bound():
    regime, setup = prepared("dp(noise_multiplier=1.0, accountant='rdp')")
    assert regime.guard is None
    take(regime, setup, [0.0, 0.5])
    expected = epsilon(sample_rate=BATCH / N, noise_multiplier=[1.0, 1.0], steps=2,
                       delta=0.1 / N, accountant="rdp")
    assert regime.spent() == pytest.approx(expected, rel=1e-12)
    assert regime.spent() != pytest.approx(epsilon(sample_rate=BATCH / N, noise_multiplier=1.0,
                                                   steps=2, delta=0.1 / N), rel=1e-3)


def test_the_gdp_estimate_silences_only_its_own_not_a_bound_warning(monkeypatch):
    regime, setup = prepared("dp(noise_multiplier=1.5, accountant='gdp')")
    regime.noise_history = [1.5, 1.5]

    def warns_twice(hist, *, delta, accountant):
        warnings.warn(GDP_WARNING, UserWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
        return 1.0

    monkeypatch.setattr(dp_module, "epsilon_of_history", warns_twice)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert regime.gdp_estimate() == 1.0
    assert [str(w.message) for w in caught] == ["something else"]
