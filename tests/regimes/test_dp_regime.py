"""The DP regime inside the one loop: equivalence with plain SGD, schedules per real step under
a memory manager, a hard epsilon budget, attacks on DP models, DP adversarial training."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from helpers import record_lrs, tiny

from robustlr import config as config_module
from robustlr import data, experiment, models, schedules
from robustlr.attacks import PGD, Square, cascade
from robustlr.grid import expand
from robustlr.privacy import epsilon
from robustlr.regimes import REGIMES
from robustlr.regimes.base import TrainingSetup
from robustlr.regimes.dp import DPRegime
from robustlr.runs import folder
from robustlr.training.loop import train_trial
from robustlr.training.probes import build_probes

GROUP_CNN = {"name": "cnn", "norm": "group", "width": 8, "hidden": 16}
IMAGES = {"synthetic": {"num_examples": 240, "num_classes": 3, "shape": [1, 8, 8]}}


def trial_of(**overrides):
    overrides = {"data": IMAGES, "model": GROUP_CNN, **overrides}
    config = experiment.from_mapping(tiny(**overrides))
    return config, expand(config), data.prepare(config.data, seed=0)


class _Capture:
    """A probe that keeps a copy of the final (unwrapped) model."""

    def __init__(self, store):
        self.store = store

    def epoch(self, model):
        return {}

    def final(self, model, trial_dir):
        self.store["model"] = copy.deepcopy(model)
        return {}


def test_dp_without_noise_or_clipping_is_plain_sgd():
    # public constants: a DP trial would otherwise normalize with the dataset's public default
    config, (standard, private), bundle = trial_of(
        data={**IMAGES, "mean": [0.5], "std": [0.25]}, schedules=["constant"],
        train={"epochs": 1, "batch_size": 16, "momentum": 0.0},
        regimes=["standard", "dp(noise_multiplier=0, max_grad_norm=1e6, poisson=false)"])
    assert len(bundle.train[1]) % 16 == 0  # Opacus divides by the expected batch size
    store_a, store_b = {}, {}
    train_trial(config, standard, bundle, on_epoch=lambda r: None, probes=[_Capture(store_a)])
    summary = train_trial(config, private, bundle, on_epoch=lambda r: None, probes=[_Capture(store_b)])
    for ours, reference in zip(store_b["model"].parameters(), store_a["model"].parameters()):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)
    assert summary["epsilon"] == float("inf")


def test_lr_schedule_is_applied_per_real_step_under_the_memory_manager(monkeypatch):
    seen = record_lrs(monkeypatch, after_step=True)
    spec = "cosine(warmup=0.2)"
    config, (trial,), bundle = trial_of(
        schedules=[spec], train={"epochs": 2, "batch_size": 32, "lr": 0.4},
        regimes=["dp(noise_multiplier=1.0, physical_batch_size=8, grad_sample_mode=hooks)"])
    summary = train_trial(config, trial, bundle, on_epoch=lambda r: None)
    steps = summary["dp_steps"]
    assert summary["steps"] == steps == len(seen) > 0
    schedule = schedules.parse(spec)
    total = summary["planned_steps"]
    assert seen == pytest.approx([0.4 * schedule(s / total) for s in range(steps)])


@pytest.mark.parametrize("regime", [
    {"name": "dp", "target_epsilon": 2.0, "noise_schedule": "linear(final=0.2)"},
    {"name": "dp", "target_epsilon": 2.0, "accountant": "rdp", "noise_schedule": "step(milestones=[0.3], gamma=0.25)"},
])
def test_target_epsilon_is_never_exceeded_even_with_an_aggressive_noise_schedule(regime):
    config, (trial,), bundle = trial_of(schedules=["constant"], regimes=[regime],
                                        train={"epochs": 3, "batch_size": 24})
    rows: list[dict] = []
    summary = train_trial(config, trial, bundle, on_epoch=rows.append)
    assert summary["status"] in ("ok", "budget_exhausted")
    assert max(r["epsilon"] for r in rows) <= 2.0 and summary["epsilon"] <= 2.0
    assert summary["epsilon"] >= 2.0 * 0.95  # calibrated to land on the target
    q = config.train.batch_size / len(bundle.train[1])  # the config's, not the summary's
    independent = epsilon(sample_rate=q, noise_multiplier=[
        summary["noise_multiplier"] * schedules.parse(regime["noise_schedule"])(s / summary["dp_steps"])
        for s in range(summary["dp_steps"])], steps=summary["dp_steps"], delta=summary["delta"],
        accountant=regime.get("accountant", "prv"))
    assert independent == pytest.approx(summary["epsilon"], rel=0.02)


def test_a_hard_cap_stops_the_trial_as_budget_exhausted():
    config, (trial,), bundle = trial_of(
        schedules=["constant"], train={"epochs": 6, "batch_size": 24},
        regimes=[{"name": "dp", "noise_multiplier": 1.0, "max_epsilon": 3.0}])
    rows: list[dict] = []
    summary = train_trial(config, trial, bundle, on_epoch=rows.append)
    assert summary["status"] == "budget_exhausted" and summary["budget_exhausted"] is True
    assert 1 <= summary["epochs"] < 6
    assert summary["epsilon"] <= 3.0 and all(r["epsilon"] <= 3.0 for r in rows)


def test_a_dp_model_can_be_attacked_during_training_and_after_loading(tmp_path):
    config, (trial,), bundle = trial_of(
        schedules=["constant"], train={"epochs": 2, "batch_size": 24},
        regimes=["dp(noise_multiplier=0.5)"],
        evaluation={"attack": "pgd(eps=0.1, steps=3)", "subset": 40})
    trained: dict = {}
    summary = train_trial(config, trial, bundle, on_epoch=lambda r: None, trial_dir=tmp_path,
                          save_model=True,
                          probes=[*build_probes(config, trial, bundle), _Capture(trained)])
    assert summary["status"] == "ok" and 0 <= summary["robust_acc"] <= 1
    model = models.load(tmp_path / "model.pt").eval()
    x, y = bundle.test[0][:30], bundle.test[1][:30]
    with torch.no_grad():  # the checkpoint is the trained model, Opacus' wrapper removed
        torch.testing.assert_close(model(x), trained["model"].eval()(x))
        clean_correct = model(x).argmax(1) == y
    result = cascade(model, x, y, [("pgd", PGD(eps=0.1, steps=3)),
                                   ("square", Square(eps=0.1, queries=20))])
    assert result.clean_acc == pytest.approx(clean_correct.float().mean().item())
    assert not (result.correct & ~clean_correct).any()  # robust only where clean-correct
    assert result.robust_acc < result.clean_acc  # the attacks flip points of the loaded model


def test_adversarial_training_under_dp_trains_on_perturbed_inputs_inside_the_eps_ball(monkeypatch):
    eps, batches = 0.1, []
    original = DPRegime.losses

    def spy(self, model, x, y, *, progress):  # every forward: the attack's, then training's
        inputs: list[torch.Tensor] = []
        hook = model.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach()))
        try:
            out = original(self, model, x, y, progress=progress)
        finally:
            hook.remove()
        batches.append((x.detach().clone(), inputs[-1].clone(), len(inputs)))
        return out

    monkeypatch.setattr(DPRegime, "losses", spy)
    config, (trial,), bundle = trial_of(
        schedules=["constant"], train={"epochs": 1, "batch_size": 24},
        regimes=[f"dp(noise_multiplier=0.5, adversarial_eps={eps}, adversarial_steps=2)"])
    summary = train_trial(config, trial, bundle, on_epoch=lambda r: None)
    assert summary["status"] == "ok" and summary["dp_steps"] > 0 and batches
    for clean, trained_on, forwards in batches:
        if len(clean) == 0:
            continue  # Poisson sampling can draw an empty batch
        assert forwards == 3  # two attack steps, then the private forward
        distance = (trained_on - clean).abs().amax()
        assert eps / 2 < distance <= eps + 1e-6  # perturbed, and inside the eps-ball
        assert trained_on.min() >= 0 and trained_on.max() <= 1


def test_sample_rate_and_epsilon_follow_the_configs_batch_size_n_and_sigma():
    config, (trial,), bundle = trial_of(schedules=["constant"], train={"epochs": 2, "batch_size": 24},
                                        regimes=["dp(noise_multiplier=1.3)"])
    summary = train_trial(config, trial, bundle, on_epoch=lambda r: None)
    n = len(bundle.train[1])
    q = config.train.batch_size / n  # from the config, not from the summary under test
    assert summary["sample_rate"] == q
    assert summary["delta"] == 0.1 / n
    expected = epsilon(sample_rate=q, noise_multiplier=1.3, steps=summary["dp_steps"],
                       delta=0.1 / n)
    assert summary["epsilon"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("clip", [3.0, 0.25])
def test_opacus_adds_noise_of_std_sigma_times_the_clipping_bound(clip):
    # zero inputs give zero per-sample gradients: the whole update is noise of std
    # sigma * C / B (Opacus sums the clipped gradients, adds N(0, (sigma C)^2), divides by B)
    sigma, batch = 0.7, 50
    regime = REGIMES.build(f"dp(noise_multiplier={sigma}, max_grad_norm={clip}, poisson=false, "
                           "grad_sample_mode=hooks)")
    model = torch.nn.Linear(64, 40, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    data = (torch.zeros(2 * batch, 64), torch.zeros(2 * batch, dtype=torch.long))
    setup = regime.prepare(TrainingSetup(
        model=model, optimizer=optimizer, loader=None, total_steps=2, epochs=1,
        dataset_size=2 * batch, batch_size=batch, device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0), train_data=data))
    x, y = next(iter(setup.loader))
    before = model.weight.detach().clone()
    regime.before_step(progress=0.0)
    regime.losses(setup.model, x, y, progress=0.0)["loss"].backward()
    assert regime.step(setup.optimizer)
    update = (model.weight.detach() - before).flatten()
    assert update.std().item() == pytest.approx(sigma * clip / batch, rel=0.1)


def test_a_cap_that_allows_no_step_is_a_config_error_before_any_folder(tmp_path):
    config = experiment.from_mapping(tiny(
        data=IMAGES, model=GROUP_CNN, schedules=["constant"], train={"batch_size": 24},
        regimes=["standard", "dp(noise_multiplier=0.5, max_epsilon=1.0)"]))
    with pytest.raises(config_module.ConfigError) as info:
        folder.start(config, out=tmp_path / "run")
    message = str(info.value)
    assert "regimes[1]" in message and "allows no step" in message and "costs epsilon" in message
    assert "\n" not in message and not (tmp_path / "run").exists()


def test_gdp_is_reported_beside_a_bound_that_stops_the_run():
    config, (trial,), bundle = trial_of(
        schedules=["constant"], train={"epochs": 2, "batch_size": 24},
        regimes=["dp(noise_multiplier=0.6, max_epsilon=4, accountant=gdp)"])
    summary = train_trial(config, trial, bundle, on_epoch=lambda r: None)
    assert summary["accountant"] == "prv"  # the bound that stopped the run
    bound = epsilon(sample_rate=summary["sample_rate"], noise_multiplier=0.6,
                    steps=summary["dp_steps"], delta=summary["delta"])
    assert summary["epsilon"] == pytest.approx(bound, rel=1e-6) and summary["epsilon"] <= 4
    assert 0 < summary["epsilon_gdp"] < summary["epsilon"]  # GDP under-reports here


def test_opacus_hook_warnings_are_not_shown(recwarn):
    config, (trial,), bundle = trial_of(
        schedules=["constant"], train={"epochs": 1, "batch_size": 24},
        regimes=["dp(noise_multiplier=1.0, grad_sample_mode=hooks, adversarial_eps=0.05, "
                 "adversarial_steps=1)"])
    train_trial(config, trial, bundle, on_epoch=lambda r: None)
    assert not [w for w in recwarn if "Full backward hook" in str(w.message)]


@pytest.mark.parametrize("regime, message", [
    ("dp", "give exactly one of noise_multiplier and target_epsilon"),
    ("dp(noise_multiplier=1, target_epsilon=3)", "give exactly one"),
    ("dp(noise_multiplier=1, accountant=moments)", "accountant must be one of"),
    ("dp(target_epsilon=3, max_epsilon=2)", "max_epsilon (2.0) must be >= target_epsilon"),
    ("dp(noise_multiplier=1, delta=2)", "delta must be in (0, 1)"),
])
def test_bad_dp_settings_are_one_line_config_errors(regime, message):
    with pytest.raises(config_module.ConfigError) as info:
        experiment.from_mapping(tiny(regimes=[regime]))
    assert message in str(info.value) and "regimes[0]" in str(info.value)


def test_delta_at_or_above_one_over_n_fails_the_trial_with_a_clear_error():
    config, (trial,), bundle = trial_of(schedules=["constant"],
                                        regimes=["dp(noise_multiplier=1, delta=0.1)"])
    with pytest.raises(ValueError, match="delta must be below 1/N"):
        train_trial(config, trial, bundle, on_epoch=lambda r: None)


def test_a_linear_noise_schedule_reports_epsilon_within_1_percent_of_exact_pld():
    pld = pytest.importorskip("dp_accounting.pld.privacy_loss_distribution")
    config, (trial,), bundle = trial_of(
        schedules=["constant"], train={"epochs": 2, "batch_size": 24},
        regimes=["dp(noise_multiplier=1.2, noise_schedule='linear(final=0.5)')"])
    summary = train_trial(config, trial, bundle, on_epoch=lambda r: None)
    steps = summary["dp_steps"]
    assert steps == 2 * len(bundle.train[1]) // 24
    q = config.train.batch_size / len(bundle.train[1])
    # every step its own noise value: the sequence the trial used, composed exactly by Google's
    # dp-accounting (pessimistic PLD, an upper bound) with no grouping or rounding
    noise = [1.2 * schedules.parse("linear(final=0.5)")(s / steps) for s in range(steps)]
    assert len(set(noise)) == steps
    composed = None
    for sigma in noise:
        step = pld.from_gaussian_mechanism(sigma, sampling_prob=q, pessimistic_estimate=True,
                                           value_discretization_interval=1e-4)
        composed = step if composed is None else composed.compose(step)
    exact = composed.get_epsilon_for_delta(summary["delta"])
    assert exact <= summary["epsilon"] <= exact * 1.01


def _gdp_epsilon(mu: float, delta: float) -> float:
    """Epsilon of mu-GDP by bisection on the closed form (Balle & Wang 2018): the exact value
    of full-batch DP-SGD, computed here without robustlr's accounting."""
    from scipy.stats import norm

    lo, hi = 0.0, mu * mu / 2 + 10 * mu + 10
    for _ in range(200):
        mid = (lo + hi) / 2
        d = norm.cdf(-mid / mu + mu / 2) - math.exp(mid) * norm.cdf(-mid / mu - mu / 2)
        lo, hi = (mid, hi) if d > delta else (lo, mid)
    return hi


@pytest.mark.parametrize("regime", ["dp(noise_multiplier=10.0, max_epsilon=20)",
                                    "dp(target_epsilon=2.0)"])
def test_full_batch_dp_sgd_puts_every_example_in_every_step_and_reports_the_exact_epsilon(
        monkeypatch, regime):
    # issue 28: a batch as large as the training set (full-batch DP gradient descent)
    n = 144  # the training split of IMAGES
    seen: list[int] = []
    losses = DPRegime.losses
    monkeypatch.setattr(DPRegime, "losses", lambda self, model, x, y, *, progress:
                        seen.append(len(y)) or losses(self, model, x, y, progress=progress))
    config, (trial,), bundle = trial_of(schedules=["constant"], train={"epochs": 3, "batch_size": n},
                                        regimes=[regime])
    assert len(bundle.train[1]) == n
    summary = train_trial(config, trial, bundle, on_epoch=lambda r: None)
    assert summary["sample_rate"] == 1.0 and summary["dp_steps"] == 3
    assert seen == [n] * 3  # Poisson sampling at rate 1: every example in every batch
    exact = _gdp_epsilon(math.sqrt(3) / summary["noise_multiplier"], 0.1 / n)
    assert exact - 1e-9 <= summary["epsilon"] <= exact * 1.01
    if "target_epsilon" in regime:  # calibrated at rate 1 to within 1% under the target (no
        assert 2.0 * 0.99 <= summary["epsilon"] <= 2.0  # PRV margin: the closed form is exact)
