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
- the domain size comes from Opacus' ``compute_safe_domain_size`` on a coarse pessimistic
  (rounded-down) history, which only widens the domain.

A domain above ``MAX_DOMAIN`` points (tiny noise: memory grows as 1/sigma^2) is refused
with :class:`DomainTooLarge`; the caller falls back to RDP, a looser bound of bounded cost.
"""

from __future__ import annotations

import math

import numpy as np
from opacus.accountants.analysis.prv import (Domain, PoissonSubsampledGaussianPRV,
                                             TruncatedPrivacyRandomVariable,
                                             compute_safe_domain_size)
from opacus.accountants.analysis.prv.prvs import DiscretePRV
from scipy.fft import irfft, next_fast_len, rfft
from scipy.special import erfcinv

EPS_ERROR = 0.01  # Opacus' PRVAccountant default: added to the estimate for the bound
MAX_DOMAIN = 1 << 23  # points; about 40 bytes each at peak
_CDF_FLOOR = 1e-18  # tail mass below which 1 - cdf is 0 in double precision


class DomainTooLarge(Exception):
    """The PRV domain for these steps would exceed ``MAX_DOMAIN`` points."""


def _band_end(q: float, sigma: float) -> float:
    """A privacy loss past which this step's cdf is 1 to double precision."""
    x = float(erfcinv(2 * _CDF_FLOOR / q))  # erfc((2 z s^2 - 1) / (2 sqrt2 s)) < 2 floor / q
    z = (2 * math.sqrt(2) * sigma * x + 1) / (2 * sigma**2)
    return z + math.log(q) + math.log1p((1 - q) * math.exp(-z))


def domain_for(levels: np.ndarray, counts: np.ndarray, q: float, *, delta: float,
               eps_error: float = EPS_ERROR) -> Domain:
    """Opacus' safe domain and mesh for these steps, sized to a fast FFT length."""
    steps = int(counts.sum())
    delta_error = delta / 1000
    # three rounded-down levels: a pessimistic history, so a domain at least as wide
    edges = np.geomspace(levels[0], levels[-1], 3) if len(levels) > 1 else levels[:1]
    coarse = edges[np.searchsorted(edges, levels, side="right") - 1]
    prvs = [PoissonSubsampledGaussianPRV(q, float(s)) for s in np.unique(coarse)]
    per = [int(counts[coarse == s].sum()) for s in np.unique(coarse)]
    half = compute_safe_domain_size(prvs, per, eps_error=eps_error, delta_error=delta_error)
    mesh = eps_error / math.sqrt(steps * math.log(12 / delta_error) / 2)
    if 2 * half / mesh > MAX_DOMAIN:
        raise DomainTooLarge(f"{2 * half / mesh:.3g} points")
    aligned = Domain.create_aligned(-half, half, mesh)
    size = next_fast_len(aligned.size, real=True)
    size += size % 2
    return Domain(aligned.t_min, aligned.t_min + (size - 1) * aligned.dt, size)


def _pmf(prv: PoissonSubsampledGaussianPRV, domain: Domain) -> tuple[np.ndarray, float]:
    """Opacus' ``discretize`` of the truncated PRV on its band; returns (pmf, mean shift)."""
    truncated = TruncatedPrivacyRandomVariable(prv, domain.t_min, domain.t_max)
    ts = domain.ts
    lo = max(int(np.searchsorted(ts, math.log1p(-prv.sample_rate))) - 1, 0)
    hi = min(int(np.searchsorted(ts, _band_end(prv.sample_rate, prv.noise_multiplier))) + 2,
             domain.size)
    edges = np.append(ts[lo:hi] - domain.dt / 2, ts[hi - 1] + domain.dt / 2)
    pmf = np.zeros(domain.size)
    pmf[lo:hi] = np.diff(truncated.cdf(edges))
    shift = truncated.mean() - float(np.dot(ts[lo:hi], pmf[lo:hi]))
    if abs(shift) >= domain.dt / 2:
        raise RuntimeError("Discrete mean differs significantly from continuous mean.")
    return pmf, shift


def compose(levels: np.ndarray, counts: np.ndarray, q: float, *, delta: float,
            eps_error: float = EPS_ERROR) -> float:
    """Upper bound on epsilon of ``counts[i]`` steps at noise ``levels[i]`` (ascending)."""
    domain = domain_for(levels, counts, q, delta=delta, eps_error=eps_error)
    spectrum, shift = None, 0.0
    for sigma, count in zip(levels, counts):
        pmf, level_shift = _pmf(PoissonSubsampledGaussianPRV(q, float(sigma)), domain)
        power = rfft(pmf) ** int(count)
        spectrum = power if spectrum is None else spectrum * power
        shift += int(count) * level_shift
    steps = int(counts.sum())
    # the index bookkeeping of Opacus' _compose_fourier for `steps` factors on one domain
    roll = steps - 1 + (domain.size // 2 if steps % 2 == 0 else 0)
    pmf = np.roll(irfft(spectrum, n=domain.size), roll)
    composed = DiscretePRV(pmf=pmf, domain=domain.shift_right(shift))
    return float(composed.compute_epsilon(delta, delta / 1000, eps_error)[2])
