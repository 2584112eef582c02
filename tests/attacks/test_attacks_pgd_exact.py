"""PGD/FGSM pinned to closed forms: the exact step, the box and the ball, the random start's
draw, the public classes forwarding every parameter, and the validation messages.

The models here are linear with hand-set weights, so every expected value is computed by
hand in the test (milliseconds, no training). These tests exist because the mutation check
(`tools/mutation.py pgd`) found bugs in these lines that the statistical tests let through.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from robustlr.attacks import FGSM, PGD, fgsm, pgd
from robustlr.attacks._common import (
    check_choice,
    check_int,
    check_number,
    check_optional_number,
    fooled,
    model_device,
    project,
    random_start,
)
from robustlr.attacks.pgd import default_step_size


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pair_model(w: torch.Tensor) -> nn.Module:
    """Logits (a, -a) with a = w . x: for label 1 the input gradient is 2 sigmoid(2a) w, a
    positive multiple of w; for label 0 a negative one."""
    linear = nn.Linear(w.numel(), 2, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.stack([w, -w]))
    return nn.Sequential(nn.Flatten(), linear)


def _mixed_weights() -> torch.Tensor:
    """64 small weights of both signs: the gradient's L2 norm is about 0.1 (under 1)."""
    return torch.randn(64, generator=gen(3)) * 0.01


def _mid_grey(n: int = 8) -> torch.Tensor:
    return torch.full((n, 1, 8, 8), 0.5)


# --- one step, in closed form ---------------------------------------------------------------

@pytest.mark.parametrize("targeted", [False, True])
def test_l2_step_is_step_size_along_the_normalized_gradient(targeted):
    # a gradient of norm ~0.1 must still be scaled up to a unit direction
    w, x = _mixed_weights(), _mid_grey()
    y = torch.ones(len(x), dtype=torch.int64)
    x_adv = pgd(_pair_model(w), x, y, eps=10.0, step_size=0.2, steps=1, norm="l2",
                random_start=False, targeted=targeted)
    sign = -1.0 if targeted else 1.0  # targeted descends the target's loss
    expected = x + sign * 0.2 * (w / w.norm()).view(1, 1, 8, 8)
    assert torch.allclose(x_adv, expected, atol=1e-6)


@pytest.mark.parametrize("targeted", [False, True])
def test_linf_step_is_step_size_times_the_gradient_sign(targeted):
    w, x = _mixed_weights(), _mid_grey()
    y = torch.ones(len(x), dtype=torch.int64)
    x_adv = pgd(_pair_model(w), x, y, eps=1.0, step_size=0.1, steps=1, random_start=False,
                targeted=targeted)
    sign = -1.0 if targeted else 1.0
    assert torch.allclose(x_adv, x + sign * 0.1 * w.sign().view(1, 1, 8, 8), atol=1e-7)


def test_l2_step_length_does_not_depend_on_the_batch_size():
    # A confidently classified batch: per-example input gradients of norm ~5e-11. Averaging the
    # loss over the batch would divide them by 64, under the 1e-12 floor of the normalization,
    # and shorten every step; summing keeps each example's gradient its own.
    w, x = torch.full((64,), 0.4), _mid_grey(64)
    y = torch.zeros(len(x), dtype=torch.int64)
    model = _pair_model(w)
    with torch.no_grad():
        assert model(x)[0, 0] - model(x)[0, 1] > 25  # margin: the loss gradient is ~e^-25
    x_adv = pgd(model, x, y, eps=10.0, step_size=0.1, steps=1, norm="l2", random_start=False)
    lengths = (x_adv - x).flatten(1).norm(dim=1)
    assert torch.allclose(lengths, torch.full_like(lengths, 0.1), rtol=1e-4)


def test_l2_step_is_clipped_to_the_box_before_the_projection():
    # ART's order: step, clip to [0, 1], then project onto the ball. Rows of 8 pixels: 16 at 0.9
    # pushed up, 16 at 0.1 pushed down (1 and 0 stop them after 0.1), 32 at 0.5 pushed up.
    w = torch.cat([torch.ones(16), -torch.ones(16), torch.ones(32)])
    x = torch.cat([torch.full((16,), 0.9), torch.full((16,), 0.1), torch.full((32,), 0.5)])
    x = x.view(1, 1, 8, 8).repeat(4, 1, 1, 1)
    y = torch.ones(4, dtype=torch.int64)
    x_adv = pgd(_pair_model(w), x, y, eps=1.0, step_size=2.0, steps=1, norm="l2",
                random_start=False)
    # each coordinate moves 2 / 8 = 0.25 before clipping; clipped: 0.1, 0.1 and 0.25 each
    clipped = torch.cat([torch.full((16,), 0.1), torch.full((16,), -0.1), torch.full((32,), 0.25)])
    scale = 1.0 / clipped.norm()  # onto the ball of radius 1
    expected = x + (scale * clipped).view(1, 1, 8, 8)
    assert torch.allclose(x_adv, expected, atol=1e-6)


def test_fgsm_is_one_signed_step_of_eps_without_random_start_by_default():
    w, x = _mixed_weights(), _mid_grey()
    y = torch.ones(len(x), dtype=torch.int64)
    model = _pair_model(w)
    up = w.sign().view(1, 1, 8, 8)
    assert torch.allclose(fgsm(model, x, y, eps=0.1), x + 0.1 * up, atol=1e-7)
    assert torch.allclose(fgsm(model, x, y, eps=0.3, step_size=0.1), x + 0.1 * up, atol=1e-7)
    assert torch.allclose(fgsm(model, x, y, eps=0.1, targeted=True), x - 0.1 * up, atol=1e-7)
    assert torch.allclose(FGSM(eps=0.3, step_size=0.1)(model, x, y), x + 0.1 * up, atol=1e-7)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_inputs_outside_the_box_come_back_inside_it(norm):
    # [0, 1] wins over the eps-ball: an input off the box by a normalization slip (below 0 or
    # above 1 by more than eps) still yields a valid image
    w = torch.cat([torch.ones(32), -torch.ones(32)])
    x = torch.cat([torch.full((32,), 1.2), torch.full((32,), -0.2)]).view(1, 1, 8, 8)
    x_adv = pgd(_pair_model(w), x, torch.ones(1, dtype=torch.int64), eps=0.1, step_size=0.05,
                steps=2, norm=norm, random_start=False)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


# --- projection and the random start --------------------------------------------------------

def test_project_keeps_points_inside_the_ball_and_scales_points_outside():
    small = torch.full((1, 4), 1e-3)  # L2 norm 2e-3, far below eps
    inside = torch.tensor([[0.3, -0.4, 0.0, 0.0]])  # norm 0.5
    outside = torch.tensor([[3.0, 4.0, 0.0, 0.0]])  # norm 5
    assert torch.equal(project(small, 1.0, "l2"), small)
    assert torch.allclose(project(inside, 1.0, "l2"), inside)
    assert torch.allclose(project(outside, 1.0, "l2"), outside / 5)
    assert torch.equal(project(torch.zeros(2, 4), 1.0, "l2"), torch.zeros(2, 4))  # no nan
    assert torch.equal(project(torch.tensor([[0.5, -0.5, 0.05]]), 0.1, "linf"),
                       torch.tensor([[0.1, -0.1, 0.05]]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 64), (5, 64), (5, 1), (3, 1, 4, 4)])
def test_random_start_is_the_documented_draw_from_the_given_generator(dtype, shape):
    # linf: x + (2U - 1) eps; l2: x + eps U^(1/d) g / |g|; drawn in x's dtype from the caller's
    # generator (an unseeded draw would make seeded restarts irreproducible)
    x = torch.full(shape, 0.5, dtype=dtype)
    eps, d = 0.3, x[0].numel()
    g = gen(11)
    expected_linf = x + (2 * torch.rand(shape, generator=g, dtype=dtype) - 1) * eps
    assert torch.equal(random_start(x, eps, "linf", gen(11)), expected_linf.clamp(0, 1))
    g = gen(11)
    direction = torch.randn(shape, generator=g, dtype=dtype)
    direction = direction / direction.flatten(1).norm(dim=1).view(-1, *[1] * (len(shape) - 1))
    u = torch.rand((shape[0],) + (1,) * (len(shape) - 1), generator=g, dtype=dtype)
    expected_l2 = (x + direction * eps * u.pow(1.0 / d)).clamp(0, 1)
    start = random_start(x, eps, "l2", gen(11))
    assert start.dtype == dtype
    assert torch.allclose(start, expected_l2, atol=1e-12 if dtype == torch.float64 else 1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_lands_on_the_device_of_x(norm):
    # the draw runs on the generator's device (here the CPU) and then moves to x's device
    x = torch.zeros(3, 4, device="meta")
    assert random_start(x, 0.1, norm, gen()).device == x.device


# --- success, early stop and restarts, targeted ---------------------------------------------

def test_fooled_means_target_reached_when_targeted_and_label_lost_otherwise():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    y = torch.tensor([0, 0])
    assert fooled(logits, y, False).tolist() == [False, True]
    assert fooled(logits, y, True).tolist() == [True, False]


def test_early_stop_leaves_already_successful_examples_where_they_are():
    # logits (a, -a) with a = 0.32 > 0: every example is predicted as class 0
    model, x = _pair_model(torch.full((64,), 0.01)), _mid_grey(4)
    zeros, ones = torch.zeros(4, dtype=torch.int64), torch.ones(4, dtype=torch.int64)
    run = dict(eps=0.2, step_size=0.05, steps=3, random_start=False, early_stop=True)
    assert torch.equal(pgd(model, x, zeros, targeted=True, **run), x)  # at the target already
    assert torch.equal(pgd(model, x, ones, **run), x)  # misclassified already
    assert not torch.equal(pgd(model, x, ones, targeted=True, **run), x)
    assert not torch.equal(pgd(model, x, zeros, **run), x)


def _reference_restarts(model, x, y, *, restarts, seed, targeted, **run):
    """Per example: the first restart that succeeds, else the one of highest loss (the
    earliest on ties); each restart is a single run drawing from the same generator in turn."""
    g = gen(seed)
    runs = [pgd(model, x, y, restarts=1, generator=g, targeted=targeted, **run)
            for _ in range(restarts)]
    picks = []
    with torch.no_grad():
        for i in range(len(x)):
            logits = torch.cat([model(r[i:i + 1]) for r in runs])
            target = y[i].expand(restarts)
            loss = nn.functional.cross_entropy(logits, target, reduction="none")
            success = logits.argmax(1) == target if targeted else logits.argmax(1) != target
            if success.any():
                picks.append(int(success.nonzero()[0]))
            else:
                score = -loss if targeted else loss
                picks.append(int((score == score.max()).nonzero()[0]))
    return torch.stack([runs[r][i] for i, r in enumerate(picks)]), picks


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("restarts", [2, 4])
def test_restarts_keep_the_first_success_else_the_highest_loss(restarts, targeted):
    model, (x, y) = _small_model(), _small_batch()
    if targeted:
        y = (y + 1) % 3
    run = dict(eps=0.15, step_size=0.03, steps=2)
    expected, picks = _reference_restarts(model, x, y, restarts=restarts, seed=9,
                                          targeted=targeted, **run)
    assert len(set(picks)) > 1  # restarts matter for this batch
    got = pgd(model, x, y, restarts=restarts, generator=gen(9), targeted=targeted, **run)
    assert torch.equal(got, expected)
    # one restart by default
    assert torch.equal(pgd(model, x, y, generator=gen(9), targeted=targeted, **run),
                       pgd(model, x, y, restarts=1, generator=gen(9), targeted=targeted, **run))


def test_restarts_stop_once_every_example_is_fooled():
    # label 1 against a model predicting 0 everywhere: the first restart already fools all
    calls = []
    model = _pair_model(torch.full((64,), 0.01))
    model.register_forward_hook(lambda *_: calls.append(1))
    x, y = _mid_grey(4), torch.ones(4, dtype=torch.int64)
    pgd(model, x, y, eps=0.1, step_size=0.05, steps=2, restarts=5, generator=gen())
    assert len(calls) == 2 + 1  # one restart: its 2 steps and the check of its result


def test_restarts_never_replace_a_point_by_an_equally_good_one():
    # the model ignores its input: every restart has the same loss and none succeeds, so the
    # first restart's point (its random start) is kept
    linear = nn.Linear(64, 3)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    model, x = nn.Sequential(nn.Flatten(), linear), _mid_grey()
    y = torch.zeros(len(x), dtype=torch.int64)
    run = dict(eps=0.1, step_size=0.05, steps=2)
    first = pgd(model, x, y, restarts=1, generator=gen(5), **run)
    assert not torch.equal(first, x)
    assert torch.equal(pgd(model, x, y, restarts=3, generator=gen(5), **run), first)


# --- the public classes forward every parameter ---------------------------------------------

def _small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))


def _small_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(1)
    return torch.rand(32, 1, 4, 4, generator=g), torch.randint(0, 3, (32,), generator=g)


# (the parameter under test, the setting where it changes the result)
VARIANTS = [
    ({}, {}),
    ({"random_start": False}, {}),
    ({"restarts": 3}, {"steps": 1, "step_size": 0.01}),
    ({"early_stop": True}, {}),
    ({"targeted": True}, {}),
    ({"norm": "l2"}, {"eps": 1.0}),
    ({"step_size": 0.01}, {}),
]


@pytest.mark.parametrize("variant,setting", VARIANTS)
def test_public_pgd_equals_functional_pgd_with_the_same_parameters(variant, setting):
    model, (x, y) = _small_model(), _small_batch()
    params = {"eps": 0.3, "steps": 5, "seed": 4, **setting}
    attack = PGD(**params, **variant)
    expected = pgd(model, x, y, eps=attack.eps, step_size=attack.alpha, steps=attack.steps,
                   norm=attack.norm, random_start=attack.random_start, restarts=attack.restarts,
                   targeted=attack.targeted, early_stop=attack.early_stop,
                   generator=gen(attack.seed))
    assert torch.equal(attack(model, x, y), expected)
    if variant:  # the parameter matters here, so forwarding its default instead would be seen
        assert not torch.equal(attack(model, x, y), PGD(**params)(model, x, y))


@pytest.mark.parametrize("variant", [{}, {"random_start": True}, {"step_size": 0.05},
                                     {"random_start": True, "step_size": 0.05}])
def test_public_fgsm_equals_functional_fgsm_with_the_same_parameters(variant):
    model, (x, y) = _small_model(), _small_batch()
    attack = FGSM(eps=0.1, seed=6, **variant)
    expected = fgsm(model, x, y, eps=0.1, step_size=attack.step_size,
                    random_start=attack.random_start, generator=gen(6))
    assert torch.equal(attack(model, x, y), expected)
    if variant:
        assert not torch.equal(attack(model, x, y), FGSM(eps=0.1, seed=6)(model, x, y))


def test_seeded_fgsm_rs_is_reproducible_and_the_seed_matters():
    model, (x, y) = _small_model(), _small_batch()
    a = fgsm(model, x, y, eps=0.1, random_start=True, generator=gen(2))
    b = fgsm(model, x, y, eps=0.1, random_start=True, generator=gen(2))
    c = fgsm(model, x, y, eps=0.1, random_start=True, generator=gen(3))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a, pgd(model, x, y, eps=0.1, step_size=0.1, steps=1, generator=gen(2)))


def test_default_step_size_is_two_and_a_half_eps_over_steps():
    assert default_step_size(eps=0.2, steps=4) == pytest.approx(0.125)
    assert PGD(eps=0.1, steps=20).alpha == pytest.approx(0.0125)
    assert PGD(eps=0.1, steps=20, step_size=0.03).alpha == 0.03


# --- model_device ---------------------------------------------------------------------------

def test_model_device_is_the_first_parameter_or_buffer_else_the_fallback():
    cpu = torch.device("cpu")
    assert model_device(nn.Linear(2, 2, device="meta"), cpu).type == "meta"  # parameters only
    buffers_only = nn.BatchNorm1d(2, affine=False, device="meta")
    assert model_device(buffers_only, cpu).type == "meta"
    assert model_device(nn.Flatten(), torch.device("meta")).type == "meta"  # neither: fallback
    assert model_device(nn.Linear(2, 2), torch.device("meta")) == cpu


# --- validation: one-line messages that name the parameter -------------------------------------

def raises(message: str):
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


def test_check_helpers_messages():
    with raises("a must be a number, got True"):
        check_number("a", True)
    with raises("a must be a number, got '1'"):
        check_number("a", "1")  # type: ignore[arg-type]
    with raises("a must be a number, got nan"):
        check_number("a", float("nan"))
    with raises("a must be >= 0, got -1"):
        check_number("a", -1)
    with raises("a must be > 0, got 0"):
        check_number("a", 0, strict=True)
    with raises("a must be >= 1, got 0.5"):
        check_number("a", 0.5, low=1)
    check_number("a", 0)
    check_number("a", 1, low=1)
    check_number("a", 2, strict=True)
    with raises("n must be an integer, got True"):
        check_int("n", True)
    with raises("n must be an integer, got 1.0"):
        check_int("n", 1.0)  # type: ignore[arg-type]
    with raises("n must be >= 2, got 1"):
        check_int("n", 1, low=2)
    check_int("n", 0)
    with raises("norm must be one of linf, l2, got 'l1'"):
        check_choice("norm", "l1", ("linf", "l2"))
    with raises("k must be one of 1, 2, got 3"):
        check_choice("k", 3, (1, 2))
    check_optional_number("s", None)
    with raises("s must be > 0, got 0"):
        check_optional_number("s", 0, strict=True)
    with raises("s must be >= 0, got -1"):
        check_optional_number("s", -1)


def _call_pgd(**kwargs):
    x, y = torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.int64)
    params = {"eps": 0.1, "step_size": 0.1, "steps": 1, **kwargs}
    return pgd(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), x, y, **params)


def _call_fgsm(**kwargs):
    x, y = torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.int64)
    return fgsm(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), x, y, **{"eps": 0.1, **kwargs})


@pytest.mark.parametrize("make,kwargs,message", [
    (_call_pgd, {"eps": -1}, "eps must be >= 0, got -1"),
    (_call_pgd, {"step_size": -1}, "step_size must be >= 0, got -1"),
    (_call_pgd, {"steps": 1.5}, "steps must be an integer, got 1.5"),
    (_call_pgd, {"restarts": 0}, "restarts must be >= 1, got 0"),
    (_call_pgd, {"norm": "l1"}, "norm must be one of linf, l2, got 'l1'"),
    (_call_fgsm, {"eps": -1}, "eps must be >= 0, got -1"),
    (_call_fgsm, {"step_size": -1}, "step_size must be >= 0, got -1"),
    (PGD, {"eps": -1}, "eps must be >= 0, got -1"),
    (PGD, {"step_size": -1}, "step_size must be >= 0, got -1"),
    (PGD, {"steps": 0}, "steps must be >= 1, got 0"),
    (PGD, {"restarts": 0}, "restarts must be >= 1, got 0"),
    (PGD, {"norm": "l1"}, "norm must be one of linf, l2, got 'l1'"),
    (PGD, {"seed": -1}, "seed must be >= 0, got -1"),
    (FGSM, {"eps": -1}, "eps must be >= 0, got -1"),
    (FGSM, {"eps": 0.1, "step_size": -1}, "step_size must be >= 0, got -1"),
    (FGSM, {"eps": 0.1, "seed": -1}, "seed must be >= 0, got -1"),
])
def test_bad_parameters_name_the_parameter_exactly(make, kwargs, message):
    with raises(message):
        make(**kwargs)
