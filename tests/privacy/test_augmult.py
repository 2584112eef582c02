"""Augmentation multiplicity under DP (De et al. 2022, arXiv:2204.13650): K augmented views
of one example contribute one clipped gradient, the mean of the views' gradients; K = 1 is
the regime as it was."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny

from robustlr import config as config_module
from robustlr import experiment
from robustlr.grid import expand
from robustlr.regimes import REGIMES
from robustlr.regimes.base import TrainingSetup
from robustlr.runs import folder
from robustlr.training.trial import run_trial

K, FEATURES, CLASSES = 4, 12, 3


def _regime(spec: str, examples: int, batch: int):
    torch.manual_seed(0)
    regime = REGIMES.build(spec)
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, 8), torch.nn.Tanh(),
                                torch.nn.Linear(8, CLASSES))
    data = (torch.randn(examples, FEATURES, generator=torch.Generator().manual_seed(1)),
            torch.arange(examples) % CLASSES)
    setup = regime.prepare(TrainingSetup(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=1.0), loader=None,
        total_steps=1, epochs=1, dataset_size=examples, batch_size=batch,
        device=torch.device("cpu"), generator=torch.Generator().manual_seed(0), train_data=data))
    return regime, setup, model


def _views(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """K views per example in consecutive rows, as AugmentedBatches makes them."""
    noise = torch.randn(len(x) * K, FEATURES, generator=torch.Generator().manual_seed(2))
    return x.repeat_interleave(K, 0) + 0.5 * noise, y.repeat_interleave(K, 0)


def _update(regime, setup, model, x, y) -> torch.Tensor:
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    regime.before_step(progress=0.0)
    regime.losses(setup.model, x, y, progress=0.0)["loss"].backward()
    assert regime.step(setup.optimizer)
    return before - torch.cat([p.detach().flatten() for p in model.parameters()])  # lr 1


def test_one_example_with_k_views_contributes_at_most_the_clipping_bound():
    """Batch of one example, no noise, a bound every gradient exceeds: the update is that
    example's one clipped gradient, of norm C. Clipping each view (the bug this prevents)
    would sum K clipped gradients, close to K * C here."""
    clip = 1e-3
    regime, setup, model = _regime(f"dp(noise_multiplier=0, max_grad_norm={clip}, poisson=false, "
                                   f"grad_sample_mode=hooks, augmult={K})", examples=8, batch=1)
    x, y = next(iter(setup.loader))
    update = _update(regime, setup, model, *_views(x, y))
    assert update.norm().item() == pytest.approx(clip, rel=1e-4)


@pytest.mark.parametrize("mode", ["hooks", "functorch"])
def test_without_clipping_k_views_give_the_gradient_of_the_mean_loss_over_all_views(mode):
    """No noise, no effective clipping: the DP update equals plain autograd's gradient of
    the mean loss over the K views of every example (the scale is one example's)."""
    regime, setup, model = _regime(f"dp(noise_multiplier=0, max_grad_norm=1e6, poisson=false, "
                                   f"grad_sample_mode={mode}, augmult={K})", examples=24, batch=6)
    reference = torch.nn.Sequential(torch.nn.Linear(FEATURES, 8), torch.nn.Tanh(),
                                    torch.nn.Linear(8, CLASSES))
    reference.load_state_dict({k.removeprefix("_module."): v for k, v in model.state_dict().items()})
    x, y = _views(*next(iter(setup.loader)))
    torch.nn.functional.cross_entropy(reference(x), y).backward()
    expected = torch.cat([p.grad.flatten() for p in reference.parameters()])
    torch.testing.assert_close(_update(regime, setup, model, x, y), expected, rtol=1e-5, atol=1e-7)


def test_augmult_needs_a_mode_that_forms_per_sample_gradients_and_augmentation(tmp_path):
    with pytest.raises(ValueError, match="augmult > 1 needs grad_sample_mode hooks or functorch"):
        REGIMES.build("dp(noise_multiplier=1.0, augmult=2)")
    config = experiment.from_mapping(tiny(regimes=["dp(noise_multiplier=1.0, augmult=2, "
                                                      "grad_sample_mode=hooks)"]))
    with pytest.raises(config_module.ConfigError, match="augmult needs data.augment"):
        folder.start(config, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _trained(regime: str) -> dict[str, torch.Tensor]:
    config = experiment.from_mapping(tiny(
        regimes=[regime], schedules=["constant"], train={"epochs": 1, "batch_size": 32},
        data={"augment": ["hflip"]}))
    store: dict[str, torch.Tensor] = {}

    class Keep:
        def epoch(self, model):
            return {}

        def final(self, model, trial_dir):
            store.update({k: v.clone() for k, v in model.state_dict().items()})
            return {}

    from robustlr.training import trial as trial_module

    trial = expand(config)[0]
    stage = trial_module._poison_stage(config, trial, trial_module.World())
    trial_module.train_trial(config, trial, stage.bundle, on_epoch=lambda row: None, probes=[Keep()])
    return store


def test_augmult_1_is_the_regime_as_it_was():
    base = "dp(noise_multiplier=1.0, grad_sample_mode=hooks"
    ours, before = _trained(base + ", augmult=1)"), _trained(base + ")")
    assert ours.keys() == before.keys()
    assert all(torch.equal(ours[k], before[k]) for k in ours)


def test_a_trial_with_augmult_trains_through_run_trial():
    config = experiment.from_mapping(tiny(
        regimes=[f"dp(noise_multiplier=1.0, grad_sample_mode=hooks, augmult={K})"],
        schedules=["constant"], train={"epochs": 1, "batch_size": 32},
        data={"augment": ["hflip"]}))
    summary = run_trial(config, expand(config)[0], on_epoch=lambda row: None)
    assert summary["status"] == "ok" and summary["dp_steps"] > 0
