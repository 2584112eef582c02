"""The Gaussian mechanism, calibrated exactly (Balle & Wang 2018, "Improving the Gaussian
Mechanism for Differential Privacy: Analytical Calibration and Optimal Denoising", Thm 8).

Releasing ``f(D) + N(0, sigma^2 I)`` where ``f`` has L2 sensitivity ``Delta`` is
(epsilon, delta)-DP if and only if, with ``z = sigma / Delta``,

    Phi(1 / (2z) - epsilon z) - e^epsilon Phi(-1 / (2z) - epsilon z) <= delta.

The classical ``sigma = Delta sqrt(2 ln(1.25 / delta)) / epsilon`` holds only for
epsilon < 1 and adds more noise than needed; this condition is exact, so the smallest ``z``
that meets it is found by bisection. Used for statistics of private data released beside a
DP-SGD model (a DP estimate of the normalization constants): one release, no subsampling.
"""

from __future__ import annotations

import math

_LOW, _HIGH = 1e-4, 1e6


def _phi(t: float) -> float:
    return 0.5 * math.erfc(-t / math.sqrt(2.0))


def gaussian_delta(*, epsilon: float, noise_multiplier: float) -> float:
    """The smallest delta at which one Gaussian release with ``sigma = noise_multiplier *
    sensitivity`` is (epsilon, delta)-DP."""
    if noise_multiplier <= 0:
        return 1.0
    z = noise_multiplier
    a, b = 1.0 / (2.0 * z), epsilon * z
    # e^eps * Phi(-a - b) computed in logs: e^eps overflows long before Phi underflows
    tail = _phi(-a - b)
    second = math.exp(epsilon + math.log(tail)) if tail > 0 else 0.0
    return max(0.0, _phi(a - b) - second)


def gaussian_noise_multiplier(*, epsilon: float, delta: float) -> float:
    """The smallest ``sigma / sensitivity`` for which one Gaussian release is
    (epsilon, delta)-DP (a bisection on :func:`gaussian_delta`, decreasing in z)."""
    if not epsilon > 0 or not 0 < delta < 1:
        raise ValueError(f"the Gaussian mechanism needs epsilon > 0 and delta in (0, 1), got "
                         f"{epsilon} and {delta}")
    low, high = _LOW, _HIGH
    if gaussian_delta(epsilon=epsilon, noise_multiplier=low) <= delta:
        return low
    for _ in range(200):  # geometric bisection: relative precision far below 1e-12
        middle = math.sqrt(low * high)
        if gaussian_delta(epsilon=epsilon, noise_multiplier=middle) <= delta:
            high = middle
        else:
            low = middle
    return high
