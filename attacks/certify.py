"""Certified L2 robustness by randomized smoothing.

Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via Randomized Smoothing",
ICML 2019, https://arxiv.org/abs/1902.02918. The smoothed classifier g(x) returns the class the
base model predicts most often under Gaussian noise N(0, sigma^2 I). ``certify`` (the paper's
CERTIFY) guesses the top class from ``n0`` noisy copies, counts it among ``n`` fresh ones, takes
the one-sided Clopper-Pearson lower bound pA at level ``alpha`` and certifies the L2 radius
sigma * Phi^-1(pA), or abstains when pA < 1/2; ``predict`` is the paper's PREDICT (a binomial
test between the two top classes). Both hold with probability at least 1 - alpha per example.

Inputs in [0, 1] of shape (N, ...); the model returns logits (N, C); noisy inputs are not
clipped (as in the paper). Noise comes from ``noise(shape)`` (standard normal draws), by
default a seeded torch generator on the model's device. Example::

    result = certify(model, x, sigma=0.25, n0=100, n=10_000, alpha=0.001, seed=0)
    certified_accuracy(result, y, radii=(0.0, 0.5))  # {0.0: 0.81, 0.5: 0.62}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from scipy.stats import beta, binomtest, norm
from torch import nn

from ._common import check_int, check_number, eval_mode, model_device

ABSTAIN = -1
RADII = (0.0, 0.25, 0.5, 0.75, 1.0)
Noise = Callable[[tuple[int, ...]], torch.Tensor]


@dataclass
class Certificate:
    """Per example: the smoothed prediction (``ABSTAIN`` = -1), its certified L2 radius (0 when
    abstaining) and how many of the ``n`` noisy copies the base model gave the guessed class."""

    prediction: torch.Tensor
    radius: torch.Tensor
    count: torch.Tensor


def check_params(*, sigma: float, n0: int, n: int, alpha: float, batch_size: int = 1) -> None:
    """One-line ValueErrors naming the parameter."""
    check_number("sigma", sigma, strict=True)
    check_int("n0", n0, low=1)
    check_int("n", n, low=1)
    if n0 >= n:
        raise ValueError(f"n0 must be smaller than n, got n0={n0}, n={n}")
    check_number("alpha", alpha, strict=True)
    if alpha >= 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    check_int("batch_size", batch_size, low=1)


def gaussian_noise(generator: torch.Generator) -> Noise:
    """Standard normal draws from ``generator``, on its device."""
    return lambda shape: torch.randn(shape, generator=generator, device=generator.device)


def class_counts(model: nn.Module, x: torch.Tensor, *, num: int, sigma: float, num_classes: int,
                 batch_size: int, noise: Noise) -> torch.Tensor:
    """How often the base model predicts each class on ``num`` noisy copies of one input."""
    counts = torch.zeros(num_classes, dtype=torch.long, device=x.device)
    remaining = num
    with torch.no_grad():
        while remaining > 0:
            size = min(batch_size, remaining)
            batch = x.unsqueeze(0) + sigma * noise((size, *x.shape)).to(x.device, x.dtype)
            counts += torch.bincount(model(batch).argmax(1), minlength=num_classes)
            remaining -= size
    return counts


def lower_bound(count: int, total: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower confidence bound on a binomial proportion."""
    return float(beta.ppf(alpha, count, total - count + 1)) if count > 0 else 0.0


def upper_bound(count: int, total: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson upper confidence bound."""
    return float(beta.ppf(1 - alpha, count + 1, total - count)) if count < total else 1.0


def _setup(model: nn.Module, x: torch.Tensor, noise: Noise | None, seed: int):
    device = model_device(model, x.device)
    if noise is None:
        noise = gaussian_noise(torch.Generator(device=device).manual_seed(seed))
    with torch.no_grad():
        num_classes = int(model(x[:1].to(device)).shape[1])
    return device, noise, num_classes


def certify(model: nn.Module, x: torch.Tensor, *, sigma: float, n0: int, n: int, alpha: float,
            batch_size: int = 1000, noise: Noise | None = None, seed: int = 0) -> Certificate:
    """CERTIFY for each input of ``x`` (eval mode inside, modes restored)."""
    check_params(sigma=sigma, n0=n0, n=n, alpha=alpha, batch_size=batch_size)
    predictions, radii, counts = [], [], []
    if len(x) == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return Certificate(empty, torch.zeros(0, dtype=torch.float64), empty)
    device, noise, classes = _setup(model, x, noise, seed)
    common = dict(sigma=sigma, num_classes=classes, batch_size=batch_size, noise=noise)
    with eval_mode(model):
        for example in x.to(device):
            guess = int(class_counts(model, example, num=n0, **common).argmax())
            count = int(class_counts(model, example, num=n, **common)[guess])
            counts.append(count)
            p_lower = lower_bound(count, n, alpha)
            abstain = p_lower < 0.5
            predictions.append(ABSTAIN if abstain else guess)
            radii.append(0.0 if abstain else sigma * float(norm.ppf(p_lower)))
    return Certificate(torch.tensor(predictions), torch.tensor(radii, dtype=torch.float64),
                       torch.tensor(counts))


def predict(model: nn.Module, x: torch.Tensor, *, sigma: float, n: int, alpha: float,
            batch_size: int = 1000, noise: Noise | None = None, seed: int = 0) -> torch.Tensor:
    """PREDICT: the top class, or ``ABSTAIN`` when a two-sided binomial test between the two
    top counts does not reject equality at level ``alpha``."""
    check_params(sigma=sigma, n0=1, n=max(n, 2), alpha=alpha, batch_size=batch_size)
    if len(x) == 0:
        return torch.zeros(0, dtype=torch.long)
    device, noise, classes = _setup(model, x, noise, seed)
    out = []
    with eval_mode(model):
        for example in x.to(device):
            counts = class_counts(model, example, num=n, sigma=sigma, num_classes=classes,
                                  batch_size=batch_size, noise=noise)
            top = counts.topk(2)
            first, second = int(top.values[0]), int(top.values[1])
            p_value = binomtest(first, first + second, 0.5).pvalue
            out.append(int(top.indices[0]) if p_value <= alpha else ABSTAIN)
    return torch.tensor(out)


def certified_accuracy(result: Certificate, y: torch.Tensor,
                       radii: Sequence[float] = RADII) -> dict[float, float]:
    """Share of examples predicted correctly with a certified radius >= r; abstentions count
    as wrong."""
    correct = result.prediction == y.cpu()
    return {r: (correct & (result.radius >= r)).double().mean().item() if len(y) else float("nan")
            for r in radii}


def average_certified_radius(result: Certificate, y: torch.Tensor) -> float:
    """Mean certified radius, counting 0 for wrong predictions and abstentions."""
    correct = result.prediction == y.cpu()
    return torch.where(correct, result.radius, 0.0).mean().item() if len(y) else float("nan")
