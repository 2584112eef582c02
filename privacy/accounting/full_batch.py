"""Sample rate 1 (full-batch DP-SGD): the composed Gaussian mechanism, exactly.

Without subsampling each step is a Gaussian mechanism of sensitivity 1 and noise ``sigma``,
i.e. ``1/sigma``-GDP, and Gaussian DP composes exactly: steps at ``sigma_1 .. sigma_T`` are
together ``mu``-GDP with ``mu = sqrt(sum 1/sigma_i^2)`` (Dong, Roth & Su 2019,
arXiv:1905.02383, Corollary 3.3), and ``mu``-GDP is (epsilon, delta)-DP exactly when
``delta >= Phi(-epsilon/mu + mu/2) - e^epsilon Phi(-epsilon/mu - mu/2)`` (their Corollary
2.13; Balle & Wang 2018, arXiv:1805.06530, Theorem 8). This is the mechanism's own privacy
profile, not the central-limit approximation behind the ``gdp`` accountant; epsilon is the
root of that equation, returned on its upper side.

Subsampling at any rate ``q < 1`` is a post-processing of the same pair of Gaussians (keep
the sample with probability ``q``, else replace it with pure noise), so this value bounds the
subsampled steps too, at every ``q``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.special import erfcx, ndtr

# the root is raised by this much (relative, and 1e-3 of it absolute) so that rounding in
# delta(eps) (~1e-10 relative, measured against 60-digit arithmetic) never leaves it below
_SLACK = 1e-9
_SQRT2 = math.sqrt(2)


def mu(levels: np.ndarray, counts: np.ndarray) -> float:
    """The GDP parameter of ``counts[i]`` Gaussian steps at noise ``levels[i]``."""
    return float(math.sqrt(float(np.sum(np.asarray(counts, float) / np.asarray(levels, float) ** 2))))


def log_delta(eps: float, mu_: float) -> float:
    """``log delta(eps)`` of ``mu_``-GDP, computed without cancelling huge terms.

    With ``a = -eps/mu + mu/2`` and ``b = a - mu`` (< 0 for eps >= 0), ``e^eps phi(b) =
    phi(a)`` exactly, so ``e^eps Phi(b) = phi(a) R(b)`` with the Mills ratio
    ``R(x) = Phi(x)/phi(x) = sqrt(pi/2) erfcx(-x/sqrt2)``: no exponent as large as eps appears.
    """
    a = -eps / mu_ + mu_ / 2
    tail = float(erfcx((mu_ - a) / _SQRT2)) / 2  # = e^eps Phi(b) / e^(-a^2/2)
    if a >= 0:  # Phi(a) >= 1/2: a plain difference of numbers below 1
        return math.log(float(ndtr(a)) - math.exp(-a * a / 2) * tail)
    gap = float(erfcx(-a / _SQRT2)) / 2 - tail  # delta = e^(-a^2/2) (R(a) - R(b)) / sqrt(2 pi)
    if gap <= 0:  # below double precision: delta underflows long before this
        return -math.inf
    return -a * a / 2 + math.log(gap)


def epsilon(mu_: float, delta: float) -> float:
    """Smallest epsilon (to ~1e-9 relative, never below) at which ``mu_``-GDP is
    (epsilon, delta)-DP."""
    target = math.log(delta)
    if log_delta(0.0, mu_) <= target:
        return 0.0
    hi = 1.0
    while log_delta(hi, mu_) > target:
        hi *= 2.0
    root = brentq(lambda e: log_delta(e, mu_) - target, 0.0, hi, xtol=1e-13, rtol=1e-15)
    eps = root * (1 + _SLACK) + _SLACK * 1e-3
    while log_delta(eps, mu_) > target:  # never below the root, whatever brentq returned
        eps = eps * (1 + _SLACK) + _SLACK * 1e-3
    return float(eps)
