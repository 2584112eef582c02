"""Native PGD/FGSM: budgets, modes, restarts, targeted mode, and agreement with ART."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import robustlr.attacks as attacks
from robustlr.attacks import FGSM, PGD, fgsm, pgd
from robustlr.attacks.art_adapters import art_classifier


@pytest.fixture(scope="module")
def batch(digits_tensors):
    _, _, x_test, y_test = digits_tensors
    return x_test[:200], y_test[:200]


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_import_resolves_to_this_repository():
    # an editable install made before attacks/__init__.py existed resolves a namespace package
    repo = Path(__file__).resolve().parents[2]
    assert attacks.__file__ is not None
    assert Path(attacks.__file__).resolve() == repo / "attacks" / "__init__.py"


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_eps_zero_returns_input_exactly(digits_cnn, batch, norm):
    x, y = batch
    assert torch.equal(pgd(digits_cnn, x, y, eps=0.0, step_size=0.1, steps=5, norm=norm), x)
    assert torch.equal(PGD(eps=0.0, norm=norm)(digits_cnn, x, y), x)
    assert torch.equal(fgsm(digits_cnn, x, y, eps=0.0, random_start=True), x)


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
def test_result_inside_ball_and_box(digits_cnn, batch, norm, eps):
    x, y = batch
    x_adv = PGD(eps=eps, steps=10, norm=norm, restarts=2)(digits_cnn, x, y)
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert size.max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert accuracy(digits_cnn, x_adv, y) < accuracy(digits_cnn, x, y) - 0.2


def test_fgsm_rs_inside_ball_and_box(digits_cnn, batch):
    x, y = batch
    g = torch.Generator().manual_seed(1)
    x_adv = fgsm(digits_cnn, x, y, eps=0.1, step_size=0.125, random_start=True, generator=g)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1


def _authors_fgsm(model, x, y, *, eps, alpha, noise):
    """Wong et al.'s MNIST FGSM step (train_mnist.py lines 74-82), written out: the gradient
    at x + delta with delta uniform in the ball and not clipped into [0, 1]."""
    delta = ((2 * noise - 1) * eps).requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x + delta), y)
    (grad,) = torch.autograd.grad(loss, delta)
    delta = torch.clamp(delta.detach() + alpha * grad.sign(), -eps, eps)
    delta = torch.max(torch.min(1 - x, delta), 0 - x)
    return x + delta


def test_fgsm_rs_ball_start_is_the_authors_mnist_step_and_box_start_is_not(digits_cnn, batch):
    x, y = batch
    eps, alpha = 0.3, 0.375
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(5))
    reference = _authors_fgsm(digits_cnn, x, y, eps=eps, alpha=alpha, noise=noise)
    ours = {start_in_box: fgsm(digits_cnn, x, y, eps=eps, step_size=alpha, random_start=True,
                               generator=torch.Generator().manual_seed(5),
                               start_in_box=start_in_box)
            for start_in_box in (False, True)}
    assert torch.allclose(ours[False], reference, atol=1e-6)
    # digits pixels sit at 0 often enough that clipping the start changes some gradients
    assert not torch.allclose(ours[True], reference, atol=1e-6)
    assert (ours[False] - x).abs().max() <= eps + 1e-6
    assert 0 <= ours[False].min() and ours[False].max() <= 1


def test_restarts_never_increase_robust_accuracy(digits_cnn, batch):
    x, y = batch
    one = accuracy(digits_cnn, PGD(eps=0.08, steps=3, restarts=1, seed=3)(digits_cnn, x, y), y)
    three = accuracy(digits_cnn, PGD(eps=0.08, steps=3, restarts=3, seed=3)(digits_cnn, x, y), y)
    assert three <= one


def test_targeted_moves_toward_target(digits_cnn, batch):
    x, y = batch
    target = (y + 1) % 10
    x_adv = PGD(eps=0.2, steps=20, targeted=True)(digits_cnn, x, target)
    with torch.no_grad():
        clean_hits = (digits_cnn(x).argmax(1) == target).float().mean()
        adv_hits = (digits_cnn(x_adv).argmax(1) == target).float().mean()
        clean_loss = nn.functional.cross_entropy(digits_cnn(x), target)
        adv_loss = nn.functional.cross_entropy(digits_cnn(x_adv), target)
    assert adv_hits > clean_hits + 0.3 and adv_loss < clean_loss


def test_early_stop_stops_at_first_fooling_point(digits_cnn, batch):
    x, y = batch
    x_adv = pgd(digits_cnn, x, y, eps=0.2, step_size=0.05, steps=20, early_stop=True,
                random_start=False)
    assert accuracy(digits_cnn, x_adv, y) < accuracy(digits_cnn, x, y)
    # stopping early leaves smaller perturbations than running all steps
    full = pgd(digits_cnn, x, y, eps=0.2, step_size=0.05, steps=20, random_start=False)
    assert (x_adv - x).abs().sum() < (full - x).abs().sum()


def test_native_pgd_equals_art_without_random_start(digits_cnn, batch):
    from art.attacks.evasion import ProjectedGradientDescentPyTorch

    x, y = batch
    ours = pgd(digits_cnn, x, y, eps=0.1, step_size=0.025, steps=10, random_start=False)
    art = ProjectedGradientDescentPyTorch(art_classifier(digits_cnn, x), norm=np.inf, eps=0.1,
                                          eps_step=0.025, max_iter=10, num_random_init=0,
                                          batch_size=len(x), verbose=False)
    theirs = torch.from_numpy(art.generate(x.numpy(), y=y.numpy()))
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert accuracy(digits_cnn, ours, y) == accuracy(digits_cnn, theirs, y)


def test_native_pgd_close_to_art_with_random_start(digits_cnn, digits_tensors):
    from art.attacks.evasion import ProjectedGradientDescentPyTorch

    _, _, x, y = digits_tensors
    ours = PGD(eps=0.1, steps=10, step_size=0.025)(digits_cnn, x, y)
    art = ProjectedGradientDescentPyTorch(art_classifier(digits_cnn, x), norm=np.inf, eps=0.1,
                                          eps_step=0.025, max_iter=10, num_random_init=1,
                                          batch_size=len(x), verbose=False)
    theirs = torch.from_numpy(art.generate(x.numpy(), y=y.numpy()))
    assert abs(accuracy(digits_cnn, ours, y) - accuracy(digits_cnn, theirs, y)) <= 0.015


def test_fgsm_equals_art_fgsm(digits_cnn, batch):
    from art.attacks.evasion import FastGradientMethod

    x, y = batch
    art = FastGradientMethod(art_classifier(digits_cnn, x), norm=np.inf, eps=0.1, eps_step=0.1,
                             batch_size=len(x))
    theirs = torch.from_numpy(art.generate(x.numpy(), y=y.numpy()))
    assert torch.allclose(FGSM(eps=0.1)(digits_cnn, x, y), theirs, atol=1e-6)


def _box_model() -> nn.Module:
    """Logits (s, -s) with s the input's sum: for label 1 the loss grows with every pixel."""
    linear = nn.Linear(64, 2, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.stack([torch.ones(64), -torch.ones(64)]))
    return nn.Sequential(nn.Flatten(), linear)


@pytest.mark.parametrize("attack", ["pgd", "fgsm_rs"])
def test_gradient_not_killed_at_the_box(attack):
    # Black pixels plus a random start put half the start points below 0. Clamping inside
    # the differentiated forward pass would give them zero gradient and leave them at 0.
    x, y = torch.zeros(16, 1, 8, 8), torch.ones(16, dtype=torch.int64)
    g = torch.Generator().manual_seed(0)
    if attack == "pgd":
        x_adv = pgd(_box_model(), x, y, eps=0.3, step_size=0.3, steps=1, generator=g)
    else:
        x_adv = fgsm(_box_model(), x, y, eps=0.3, step_size=0.375, random_start=True, generator=g)
    assert torch.allclose(x_adv, torch.full_like(x, 0.3))


def _bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Dropout(0.5), nn.Flatten(), nn.Linear(256, 10))


def test_public_attacks_use_eval_mode_and_restore_train_mode(batch):
    x, y = batch
    model = _bn_model().train()
    stats = model[1].running_mean.clone()
    first = PGD(eps=0.1, steps=3)(model, x, y)
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(model[1].running_mean, stats)  # BatchNorm statistics untouched
    assert torch.equal(first, PGD(eps=0.1, steps=3)(model, x, y))  # dropout was off
    FGSM(eps=0.1)(model, x, y)
    assert model.training and torch.equal(model[1].running_mean, stats)


def test_functional_pgd_leaves_mode_to_the_caller(batch):
    x, y = batch
    model = _bn_model().train()
    pgd(model, x, y, eps=0.1, step_size=0.05, steps=2)
    assert model.training
    model.eval()
    fgsm(model, x, y, eps=0.1)
    assert not model.training


def test_works_under_no_grad(digits_cnn, batch):
    x, y = batch
    with torch.no_grad():
        x_adv = PGD(eps=0.1, steps=5)(digits_cnn, x, y)
    assert accuracy(digits_cnn, x_adv, y) < accuracy(digits_cnn, x, y)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_empty_batch(digits_cnn, norm):
    x, y = torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.int64)
    out = pgd(digits_cnn, x, y, eps=0.1, step_size=0.02, steps=3, norm=norm, restarts=2)
    assert out.shape == x.shape
    assert fgsm(digits_cnn, x, y, eps=0.1, random_start=True).shape == x.shape
    assert PGD(eps=0.1, norm=norm)(digits_cnn, x, y).shape == x.shape


def test_generator_on_cpu_reproduces(digits_cnn, batch):
    x, y = batch
    a, b = (pgd(digits_cnn, x, y, eps=0.1, step_size=0.02, steps=2,
                generator=torch.Generator().manual_seed(5)) for _ in range(2))
    assert torch.equal(a, b)


# --- the random start's distribution (a start drawn in [0, eps] instead of [-eps, eps] leaves
# every test above passing: only the distribution itself can tell) ---------------------------

def _flat_model() -> nn.Module:
    """Logits that ignore the input: the input gradient is exactly zero, so an attack returns
    its random start (projected), whatever the number of steps."""
    linear = nn.Linear(64, 3)
    with torch.no_grad():
        linear.weight.zero_()
    return nn.Sequential(nn.Flatten(), linear)


def _starts(attack: str, eps: float, norm: str = "linf") -> torch.Tensor:
    """Perturbations of 512 random starts around a mid-grey image (far from the box edges)."""
    x, y = torch.full((512, 1, 8, 8), 0.5), torch.zeros(512, dtype=torch.int64)
    g = torch.Generator().manual_seed(7)
    if attack == "pgd_steps0":
        x_adv = pgd(_flat_model(), x, y, eps=eps, step_size=eps, steps=0, norm=norm, generator=g)
    elif attack == "pgd_flat":
        x_adv = pgd(_flat_model(), x, y, eps=eps, step_size=eps / 4, steps=3, norm=norm,
                    generator=g)
    elif attack == "PGD":
        x_adv = PGD(eps=eps, steps=2, norm=norm, seed=7)(_flat_model(), x, y)
    elif attack == "fgsm_rs":
        x_adv = fgsm(_flat_model(), x, y, eps=eps, step_size=1.25 * eps, random_start=True,
                     generator=g)
    else:
        x_adv = FGSM(eps=eps, random_start=True, seed=7)(_flat_model(), x, y)
    return (x_adv - x).flatten(1)


@pytest.mark.parametrize("attack", ["pgd_steps0", "pgd_flat", "PGD", "fgsm_rs", "FGSM"])
def test_linf_random_start_is_uniform_on_the_whole_ball(attack):
    eps = 0.1
    delta = _starts(attack, eps)
    assert delta.abs().max() <= eps + 1e-6
    # uniform on [-eps, eps]: mean 0, a quarter below -eps/2, a quarter above eps/2, std eps/sqrt(3)
    assert abs(delta.mean().item()) < 0.02 * eps
    assert abs((delta < -eps / 2).float().mean().item() - 0.25) < 0.01
    assert abs((delta > eps / 2).float().mean().item() - 0.25) < 0.01
    assert delta.min() < -0.99 * eps and delta.max() > 0.99 * eps
    assert abs(delta.std().item() - eps / 3 ** 0.5) < 0.02 * eps


@pytest.mark.parametrize("attack", ["pgd_steps0", "pgd_flat", "PGD"])
def test_l2_random_start_is_uniform_in_the_ball(attack):
    eps, d = 0.5, 64
    delta = _starts(attack, eps, norm="l2")
    radius = delta.norm(dim=1)
    assert radius.max() <= eps + 1e-6
    # uniform in the d-ball: (radius / eps)^d is uniform on [0, 1] (Kolmogorov-Smirnov distance)
    u = (radius / eps).pow(d).sort().values
    ecdf = torch.arange(1, len(u) + 1) / len(u)
    assert (ecdf - u).abs().max() < 1.63 / len(u) ** 0.5  # the 1% critical value
    # and the direction is isotropic: every coordinate takes both signs, mean 0
    assert abs(delta.mean().item()) < 0.05 * eps / d ** 0.5
    assert abs((delta > 0).float().mean().item() - 0.5) < 0.02
    per_coordinate = delta.mean(dim=0)
    assert per_coordinate.abs().max() < 4 * (eps / d ** 0.5) / len(delta) ** 0.5
