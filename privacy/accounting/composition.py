"""Compose many Poisson-subsampled Gaussian steps with Opacus' PRV primitives, fast.

Opacus' ``PRVAccountant`` discretises every distinct noise value over the whole domain
and convolves them pairwise: about a second per distinct value, so a noise schedule of
1,000 distinct values took minutes. Here, on the same ``Domain``, the same
``PoissonSubsampledGaussianPRV`` cdf, the same mean-preserving shift (Gopi et al. 2021,
arXiv:2106.02848) and the same ``DiscretePRV.compute_epsilon``:

- each value's pmf is evaluated only on its support band: below ``log(1 - q)`` the cdf is
  exactly 0, and past the band edge it equals 1 to double precision, so Opacus' full-domain
  differences there are 0 or rounding noise;
- all values are composed at once as one product of Fourier transforms (Opacus composes
  equal values this way, ``_compose_fourier``; products commute, so distinct values do too),
  on a domain extended to a fast FFT length;
- the domain size follows Opacus' ``compute_safe_domain_size`` (Gopi et al., remark 5.6) on
  a coarse rounded-down history and integer Renyi orders only: both can only widen it.

A domain above ``MAX_DOMAIN`` points (tiny noise: memory grows as 1/sigma^2) is refused
with :class:`DomainTooLarge`; the caller falls back to RDP, a looser bound of bounded cost.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from opacus.accountants.analysis.prv import Domain, PoissonSubsampledGaussianPRV, TruncatedPrivacyRandomVariable
from opacus.accountants.analysis.prv.prvs import DiscretePRV
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from scipy.fft import irfft, next_fast_len, rfft
from scipy.special import erfcinv

EPS_ERROR = 0.01  # Opacus' PRVAccountant default: added to the estimate for the bound
MAX_DOMAIN = 1 << 23  # points; about 40 bytes each at peak
_CDF_FLOOR = 1e-18  # tail mass below which 1 - cdf is 0 in double precision
# integer orders: their RDP is a short sum (Opacus' fractional orders cost a series each)
_ORDERS = [float(a) for a in (*range(2, 33), 40, 48, 64, 96, 128, 256)]


class DomainTooLarge(Exception):
    """The PRV domain for these steps would exceed ``MAX_DOMAIN`` points."""


def _band_end(q: float, sigma: float) -> float:
    """A privacy loss past which this step's cdf is 1 to double precision."""
    x = float(erfcinv(2 * _CDF_FLOOR / q))  # erfc((2 z s^2 - 1) / (2 sqrt2 s)) < 2 floor / q
    z = (2 * math.sqrt(2) * sigma * x + 1) / (2 * sigma**2)
    return z + math.log(q) + math.log1p((1 - q) / q * math.exp(-z))  # log(q e^z + 1 - q)


def _rdp_epsilon(history: list[tuple[float, int]], q: float, delta: float) -> float:
    rdp = sum(compute_rdp(q=q, noise_multiplier=s, steps=n, orders=_ORDERS) for s, n in history)
    with warnings.catch_warnings():  # an extreme order is only a looser (still valid) bound
        warnings.filterwarnings("ignore", message="Optimal order is the")
        return float(get_privacy_spent(orders=_ORDERS, rdp=rdp, delta=delta)[0])


def rdp_bound(levels: np.ndarray, counts: np.ndarray, q: float, *, delta: float) -> float:
    """RDP's epsilon over integer orders: the fallback when the PRV domain is too large."""
    return _rdp_epsilon([(float(s), int(n)) for s, n in zip(levels, counts)], q, delta)


def domain_for(levels: np.ndarray, counts: np.ndarray, q: float, *, delta: float,
               eps_error: float = EPS_ERROR) -> Domain:
    """Opacus' safe domain and mesh for these steps, sized to a fast FFT length."""
    steps = int(counts.sum())
    delta_error = delta / 1000
    # three rounded-down levels: a pessimistic history, so a domain at least as wide
    edges = np.geomspace(levels[0], levels[-1], 3) if len(levels) > 1 else levels[:1]
    coarse = edges[np.searchsorted(edges, levels, side="right") - 1]
    history = [(float(s), int(counts[coarse == s].sum())) for s in np.unique(coarse)]
    half = max(_rdp_epsilon(history, q, delta_error / 4),
               _rdp_epsilon([(float(levels[0]), 1)], q, delta_error / (8 * steps)))
    half = max(half, eps_error) + 3  # as compute_safe_domain_size
    mesh = eps_error / math.sqrt(steps * math.log(12 / delta_error) / 2)
    if 2 * half / mesh > MAX_DOMAIN:
        raise DomainTooLarge(f"{2 * half / mesh:.3g} points")
    aligned = Domain.create_aligned(-half, half, mesh)
    size = next_fast_len(aligned.size, real=True)
    size += size % 2
    return Domain(aligned.t_min, aligned.t_min + (size - 1) * aligned.dt, size)


def _pmf(prv: PoissonSubsampledGaussianPRV, domain: Domain) -> tuple[np.ndarray, float]:
    """Opacus' ``discretize`` of the truncated PRV on its band; returns (pmf, mean shift).

    The continuous mean (Opacus: ``quad`` per call, the slowest part) is ``b - int F`` over
    the band ``[a, b]`` (F = 0 below it, 1 above it), integrated by Simpson's rule from the
    cdf at the bin edges and centres: error O(dt^4), far below ``eps_error``.
    """
    ts, dt = domain.ts, domain.dt
    # the support starts at log(1 - q); at q = 1 (no subsampling) it has no lower end, and
    # Opacus' cdf takes log(0) = -inf there, as it should
    floor = math.log1p(-prv.sample_rate) if prv.sample_rate < 1 else -math.inf
    lo = max(int(np.searchsorted(ts, floor)) - 1, 0)
    hi = min(int(np.searchsorted(ts, _band_end(prv.sample_rate, prv.noise_multiplier))) + 2,
             domain.size)
    centres = ts[lo:hi]
    with np.errstate(divide="ignore"):
        truncated = TruncatedPrivacyRandomVariable(prv, domain.t_min, domain.t_max)
        at_edges = truncated.cdf(np.append(centres - dt / 2, centres[-1] + dt / 2))
        at_centres = truncated.cdf(centres)
    pmf = np.zeros(domain.size)
    pmf[lo:hi] = np.diff(at_edges)
    integral = dt / 6 * float(np.sum(at_edges[:-1] + 4 * at_centres + at_edges[1:]))
    shift = (centres[-1] + dt / 2 - integral) - float(np.dot(centres, pmf[lo:hi]))
    if abs(shift) >= dt / 2:
        raise RuntimeError("Discrete mean differs significantly from continuous mean.")
    return pmf, shift


def compose(levels: np.ndarray, counts: np.ndarray, q: float, *, delta: float,
            eps_error: float = EPS_ERROR) -> float:
    """Upper bound on epsilon of ``counts[i]`` steps at noise ``levels[i]`` (ascending)."""
    domain = domain_for(levels, counts, q, delta=delta, eps_error=eps_error)
    spectrum, shift = None, 0.0
    for sigma, count in zip(levels, counts):
        pmf, level_shift = _pmf(PoissonSubsampledGaussianPRV(q, float(sigma)), domain)
        power = rfft(pmf)
        if count > 1:  # complex power is slow; most values of a schedule occur once
            power **= int(count)
        spectrum = power if spectrum is None else spectrum * power
        shift += int(count) * level_shift
    steps = int(counts.sum())
    # a sum of `steps` values on the grid t_min + j dt lands at index sum(j) - (steps - 1) a,
    # with t_min = -a dt (Opacus' _compose_fourier rolls the same way for a = size/2 - 1)
    a = round(-domain.t_min / domain.dt)
    roll = (-(steps - 1) * a) % domain.size
    pmf = np.roll(irfft(spectrum, n=domain.size), roll)
    composed = DiscretePRV(pmf=pmf, domain=domain.shift_right(shift))
    return float(composed.compute_epsilon(delta, delta / 1000, eps_error)[2])
