"""Privacy auditing in one training run (Steinke, Nasr & Jagielski 2023, "Privacy Auditing with
One (1) Training Run", arXiv:2305.08846, NeurIPS 2023).

m canaries are each put in the training set independently with probability 1/2; the trained
model scores every canary; the auditor guesses "in" for the k+ highest scores, "out" for the
k- lowest and abstains on the rest. If training were (epsilon, delta)-DP, the number of correct
guesses W among the r = k+ + k- made would obey the paper's main theorem for (eps, delta)-DP
(Theorem 3), as its appendix code ``p_value_DP_audit`` evaluates it::

    q    = e^eps / (1 + e^eps)                       (accuracy of eps-DP randomized response)
    f(v) = P[Binomial(r, q) >= v]
    P[W >= v] <= f(v) + 2 m delta * max_{i = 1..v} (f(v - i) - f(v)) / i

so observing v correct guesses rejects (eps, delta)-DP at confidence 1 - beta when that
right-hand side is below beta; the epsilon lower bound is the largest such eps (robustlr's
default confidence is 95%). The same form is in jax_privacy's ``auditing._one_run_p_value``
and in the authors' snippet as copied in ubc-systopia/panoramia-privacy-measurement
(``O1_Steinke_Code/o1_audit.py``, which comments the delta term out); this module is written
from the formula, not from either code.

The guesses must not be tuned on the canaries they are scored on: :func:`audit` tries a fixed
list of guess counts and pays for the choice with a Bonferroni correction (each at beta / c),
so the reported maximum still holds at 1 - beta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import optimize, stats
from torch import nn

from ..grad_sample.modules import hooks_disabled

GUESS_FRACTIONS = (0.1, 0.2, 0.5, 1.0)
"""Shares of the m canaries guessed on (half "in" at the top, half "out" at the bottom), fixed
before any score is seen."""


def _check(m: int, guesses: int, correct: int, delta: float) -> None:
    if not 0 <= correct <= guesses <= m:
        raise ValueError(f"need 0 <= correct <= guesses <= m, got {correct}, {guesses}, {m}")
    if not 0 <= delta <= 1:
        raise ValueError(f"delta must be in [0, 1], got {delta!r}")


def p_value(*, m: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """Probability of ``correct`` or more right guesses out of ``guesses`` under
    (epsilon, delta)-DP (Theorem 3 of arXiv:2305.08846; see the module docstring)."""
    _check(m, guesses, correct, delta)
    if correct == 0:
        return 1.0
    q = 1.0 / (1.0 + math.exp(-epsilon))
    tail = float(stats.binom.sf(correct - 1, guesses, q))  # f(v)
    if delta == 0:
        return min(tail, 1.0)
    i = np.arange(1, correct + 1)
    # f(v - i) - f(v) = P[v - i <= B < v]: the pmf summed down from v - 1
    below = np.cumsum(stats.binom.pmf(correct - i, guesses, q))
    return min(tail + 2 * m * delta * float(np.max(below / i)), 1.0)


def epsilon_lower_bound(*, m: int, guesses: int, correct: int, delta: float,
                        beta: float = 0.05) -> float:
    """The largest epsilon that ``correct`` right guesses out of ``guesses`` (among ``m``
    canaries) reject at confidence ``1 - beta``; 0 when even epsilon 0 is not rejected."""
    if not 0 < beta < 1:
        raise ValueError(f"beta must be in (0, 1), got {beta!r}")

    def excess(eps: float) -> float:  # < 0 while (eps, delta)-DP is rejected
        return p_value(m=m, guesses=guesses, correct=correct, epsilon=eps, delta=delta) - beta

    if excess(0.0) >= 0:
        return 0.0
    high = 1.0
    while excess(high) < 0:  # the p-value grows with epsilon and reaches 1
        high *= 2
    return float(optimize.brentq(excess, 0.0, high, xtol=1e-9))


@dataclass(frozen=True)
class OneRunAudit:
    epsilon_lower: float  # at confidence 1 - beta, the guess count's choice paid for
    canaries: int  # m
    guesses: int  # r = k+ + k- of the guess count that gave the bound
    correct: int  # v
    k_plus: int
    k_minus: int
    delta: float
    confidence: float


def guess(scores: np.ndarray, *, k_plus: int, k_minus: int) -> np.ndarray:
    """+1 ("in") for the ``k_plus`` highest scores, -1 ("out") for the ``k_minus`` lowest,
    0 (abstain) elsewhere. Ties are broken by position, which carries no membership."""
    if k_plus < 0 or k_minus < 0 or k_plus + k_minus > len(scores):
        raise ValueError(f"need k_plus, k_minus >= 0 and k_plus + k_minus <= {len(scores)}, "
                         f"got {k_plus}, {k_minus}")
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    guesses = np.zeros(len(scores), dtype=int)
    guesses[order[:k_plus]] = 1
    guesses[order[len(scores) - k_minus:]] = -1
    return guesses


def audit(scores: np.ndarray, included: np.ndarray, *, delta: float, confidence: float = 0.95,
          fractions: tuple[float, ...] = GUESS_FRACTIONS) -> OneRunAudit:
    """The one-run bound from canary ``scores`` (higher: more likely trained on) and their
    ``included`` bits, maximised over the fixed guess ``fractions`` with Bonferroni's
    correction."""
    scores, included = np.asarray(scores, dtype=float), np.asarray(included, dtype=bool)
    m = len(scores)
    if m < 2 or len(included) != m:
        raise ValueError(f"need at least 2 canaries and one inclusion bit each, got {m} "
                         f"scores and {len(included)} bits")
    truth = np.where(included, 1, -1)
    beta = (1 - confidence) / len(fractions)
    best: OneRunAudit | None = None
    for fraction in fractions:
        r = max(2, round(fraction * m))
        k_plus, k_minus = r - r // 2, r // 2
        made = guess(scores, k_plus=k_plus, k_minus=k_minus)
        correct = int((made == truth).sum())
        bound = epsilon_lower_bound(m=m, guesses=r, correct=correct, delta=delta, beta=beta)
        if best is None or bound > best.epsilon_lower:
            best = OneRunAudit(epsilon_lower=bound, canaries=m, guesses=r, correct=correct,
                               k_plus=k_plus, k_minus=k_minus, delta=delta,
                               confidence=confidence)
    assert best is not None
    return best


@dataclass(frozen=True)
class Canaries:
    """Training examples relabelled to a random wrong class, each included with probability
    1/2: only memorisation fits a wrong label, so an included canary's loss drops."""

    index: torch.Tensor  # positions in the split they were drawn from
    x: torch.Tensor
    y: torch.Tensor  # the wrong labels
    included: torch.Tensor  # bool


def mislabeled_canaries(x: torch.Tensor, y: torch.Tensor, *, count: int, num_classes: int,
                        generator: torch.Generator) -> Canaries:
    """``count`` examples of (x, y) drawn without replacement, relabelled and coin-flipped."""
    if not 2 <= count <= len(y):
        raise ValueError(f"canaries must be between 2 and the split's {len(y)} examples, "
                         f"got {count}")
    if num_classes < 2:
        raise ValueError("mislabeled canaries need at least 2 classes")
    index = torch.randperm(len(y), generator=generator)[:count]
    shift = torch.randint(1, num_classes, (count,), generator=generator)
    included = torch.rand(count, generator=generator) < 0.5
    return Canaries(index=index, x=x[index], y=(y[index] + shift) % num_classes,
                    included=included)


@torch.no_grad()
def canary_scores(model: nn.Module, canaries: Canaries, batch_size: int = 512) -> np.ndarray:
    """Minus each canary's loss on its wrong label (Yeom et al.'s score), in float64: the
    losses of memorised canaries tie at 0.0 in float32. Model in eval mode, hooks off."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    losses = []
    with hooks_disabled(model):
        for xb, yb in zip(canaries.x.split(batch_size), canaries.y.split(batch_size)):
            logits = model(xb.to(device)).double()
            losses.append(nn.functional.cross_entropy(logits, yb.to(device), reduction="none"))
    model.train(was_training)
    return -torch.cat(losses).cpu().numpy()
