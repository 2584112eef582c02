"""For any small input shape, budget, norm, number of steps and random start, PGD and FGSM
return inputs inside the eps-ball around x and inside the [0, 1] box, with x's shape."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from robustlr.attacks import FGSM, PGD, fgsm, pgd

SLACK = 1e-5  # float32 rounding of x + delta


def model_for(shape: tuple[int, ...], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    features = 1
    for size in shape:
        features *= size
    return nn.Sequential(nn.Flatten(), nn.Linear(features, 8), nn.Tanh(), nn.Linear(8, 3))


@st.composite
def cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    n = draw(st.integers(0, 5))
    seed = draw(st.integers(0, 2 ** 16))
    g = torch.Generator().manual_seed(seed)
    # pixels at, near and away from the box's faces, where clipping and projection interact
    x = torch.rand((n, *shape), generator=g)
    x = torch.where(torch.rand(x.shape, generator=g) < 0.3, x.round(), x)
    y = torch.randint(0, 3, (n,), generator=g)
    return shape, x, y, seed


def assert_inside(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> None:
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert not x_adv.requires_grad
    if x.shape[0] == 0:
        return
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    assert size.max() <= eps * (1 + SLACK) + SLACK, (norm, eps, size.max().item())


@settings(max_examples=60, deadline=None)
@given(case=cases(), eps=st.floats(0.0, 2.0), step=st.floats(0.0, 3.0),
       steps=st.integers(0, 4), norm=st.sampled_from(["linf", "l2"]),
       random_start=st.booleans(), restarts=st.integers(1, 2), targeted=st.booleans(),
       early_stop=st.booleans())
def test_pgd_stays_in_ball_and_box(case, eps, step, steps, norm, random_start, restarts,
                                   targeted, early_stop):
    shape, x, y, seed = case
    x_adv = pgd(model_for(shape, seed), x, y, eps=eps, step_size=step, steps=steps, norm=norm,
                random_start=random_start, restarts=restarts, targeted=targeted,
                early_stop=early_stop, generator=torch.Generator().manual_seed(seed))
    assert_inside(x_adv, x, eps, norm)


@settings(max_examples=40, deadline=None)
@given(case=cases(), eps=st.floats(0.0, 1.0), step=st.none() | st.floats(0.0, 2.0),
       random_start=st.booleans())
def test_fgsm_stays_in_ball_and_box(case, eps, step, random_start):
    shape, x, y, seed = case
    model = model_for(shape, seed)
    x_adv = fgsm(model, x, y, eps=eps, step_size=step, random_start=random_start,
                 generator=torch.Generator().manual_seed(seed))
    assert_inside(x_adv, x, eps, "linf")
    assert_inside(FGSM(eps=eps, step_size=step, random_start=random_start, seed=seed)(model, x, y),
                  x, eps, "linf")


@settings(max_examples=30, deadline=None)
@given(case=cases(), eps=st.floats(0.0, 2.0), steps=st.integers(1, 3),
       norm=st.sampled_from(["linf", "l2"]))
def test_public_pgd_stays_in_ball_and_box_and_leaves_x_alone(case, eps, steps, norm):
    shape, x, y, seed = case
    original = x.clone()
    x_adv = PGD(eps=eps, steps=steps, norm=norm, seed=seed)(model_for(shape, seed), x, y)
    assert torch.equal(x, original)  # the attack never writes into its input
    assert_inside(x_adv, x, eps, norm)
