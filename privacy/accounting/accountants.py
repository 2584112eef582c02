"""Privacy accounting for DP-SGD with a noise schedule, on Opacus' accountants.

DP-SGD (Abadi et al. 2016, arXiv:1607.00133) releases, per step, a Poisson-subsampled
Gaussian mechanism. Its cost is composed by one of Opacus' accountants:

- ``prv`` (default): numerical composition of privacy loss random variables
  (Gopi et al. 2021, arXiv:2106.02848); tight, an upper bound up to ``eps_error``. Composed
  by :mod:`.composition` (Opacus' PRV primitives, all values in one Fourier product). At
  sample rate 1 (full-batch DP-SGD) the steps are plain Gaussian mechanisms, accounted
  exactly by :mod:`.full_batch`; that value also caps PRV's at every other rate.
- ``rdp``: Renyi DP (Mironov 2017; Mironov et al. 2019, arXiv:1908.10530); looser, cheap.
- ``gdp``: Gaussian DP (Dong et al. 2019, arXiv:1905.02383) through the central limit
  theorem. It is an *approximation, not a bound*: it can under-report epsilon, so it is
  never used to stop or calibrate (:data:`BOUNDS`), only reported beside a bound.

A schedule is given as one noise multiplier per step. Composition is commutative, so equal
values are merged wherever they occur. Up to ``MAX_LEVELS`` distinct values are composed
exactly; beyond that each sigma is rounded *down* onto a fine geometric grid anchored at 1
(less noise never spends less budget, so the result stays an upper bound). The grids are
nested (each coarser one a subset of the finest), the coarsest that fits being chosen, so a
prefix of a schedule never accounts above the whole schedule.

Tiny noise makes the PRV domain grow as 1/sigma^2 (22.7 GB at sigma 0.01 in Opacus): past
``composition.MAX_DOMAIN`` points the PRV bound falls back to RDP, a looser bound of
bounded cost, so no schedule can exhaust memory.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from opacus.accountants import create_accountant

from . import composition, full_batch

MAX_LEVELS = 256  # distinct values composed by PRV; RDP, loose anyway, takes RDP_LEVELS
RDP_LEVELS = 12  # Opacus RDP costs ~0.1 s a value; rounded down from the schedule's minimum
_FINEST = math.log(2) / 8192  # log-spacing of the finest grid (0.0085% apart)
GDP_WARNING = "GDP accounting is a central-limit approximation, not an upper bound on epsilon"
History = list[tuple[float, float, int]]


def _check(name: str, ok: bool, allowed: str, value) -> None:
    if not ok:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def validate(*, sample_rate: float, steps: int, delta: float, accountant: str) -> None:
    """Raise ``ValueError`` naming the first bad argument and its allowed values."""
    _check("sample_rate", 0 < sample_rate <= 1, "in (0, 1]", sample_rate)
    _check("steps", int(steps) == steps and steps >= 0, "an integer >= 0", steps)
    _check("delta", 0 < delta < 1, "in (0, 1)", delta)
    _check("accountant", accountant in ACCOUNTANTS, f"one of {sorted(ACCOUNTANTS)}", accountant)


def noise_schedule(noise_multiplier: float | Sequence[float], steps: int) -> np.ndarray:
    """Per-step noise multipliers as a float array of length ``steps``."""
    if np.ndim(noise_multiplier) == 0:
        noise = np.full(int(steps), float(np.asarray(noise_multiplier)))
    else:
        noise = np.asarray(noise_multiplier, dtype=float)
        _check("noise_multiplier", noise.shape == (steps,), f"a float or a sequence of "
               f"length steps={steps}", f"sequence of shape {noise.shape}")
    bad = noise[~(np.isfinite(noise) & (noise > 0))]
    _check("noise_multiplier", bad.size == 0, "finite and > 0 at every step",
           bad[0] if bad.size else None)
    return noise


def levels(noise: np.ndarray, max_levels: int = MAX_LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """Distinct noise values (ascending) and their counts, rounded down if too many."""
    values, counts = np.unique(noise, return_counts=True)
    if len(values) <= max_levels:
        return values, counts
    logs = np.log(noise) / _FINEST
    for coarsening in range(64):  # grid j is every 2^j-th point of the finest grid
        index = np.floor(logs / 2**coarsening + 1e-9)
        if len(np.unique(index)) <= max_levels:
            break
    values, counts = np.unique(index, return_counts=True)
    return np.exp(values * 2**coarsening * _FINEST), counts


def _anchored_levels(noise: np.ndarray, max_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """RDP's few levels: a geometric grid from the schedule's own minimum, rounded down (it
    scales with the schedule, so calibration sees a continuous epsilon)."""
    values = np.unique(noise)
    if len(values) > max_levels:
        lo, hi = float(values[0]), float(values[-1])
        ratio = (hi / lo) ** (1.0 / (max_levels - 1))
        index = np.floor(np.log(noise / lo) / math.log(ratio) + 1e-9)
        noise = lo * ratio ** np.clip(index, 0, max_levels - 1)
    return np.unique(noise, return_counts=True)


class Accountant(Protocol):
    """What composes a DP-SGD run's steps into one epsilon (a row of :data:`TABLE`)."""

    @property
    def name(self) -> str: ...

    @property
    def bound(self) -> bool:
        """An upper bound on epsilon: only such accountants stop training or calibrate."""

    @property
    def warning(self) -> str | None:
        """Said to the caller at every use (an approximation), or None."""

    def levels(self, noise: np.ndarray, max_levels: int) -> tuple[np.ndarray, np.ndarray]:
        """The schedule's noise values merged into (values, counts), rounded down."""

    def epsilon(self, hist: History, *, delta: float) -> float:
        """Epsilon of a non-empty history at ``delta``."""


@dataclass(frozen=True)
class PRV:
    """PRV composition (:mod:`.composition`), capped by the exact unsubsampled value."""

    name: str = "prv"
    bound: bool = True
    warning: str | None = None

    def levels(self, noise: np.ndarray, max_levels: int) -> tuple[np.ndarray, np.ndarray]:
        return levels(noise, max_levels)

    def epsilon(self, hist: History, *, delta: float) -> float:
        values = np.array([s for s, _, _ in hist])
        counts = np.array([n for _, _, n in hist])
        q = hist[0][1]
        # the unsubsampled steps, exactly: the whole answer at q = 1, and a bound at any q
        # that takes over from PRV's +eps_error as q nears 1 (never above the value at 1)
        exact = full_batch.epsilon(full_batch.mu(values, counts), delta)
        if q == 1:
            return exact
        try:
            bound = composition.compose(values, counts, q, delta=delta)
        except composition.DomainTooLarge:  # tiny noise: a looser bound, bounded memory
            bound = composition.rdp_bound(values, counts, q, delta=delta)
        return min(bound, exact)


@dataclass(frozen=True)
class OpacusAccountant:
    """One of Opacus' accountants, created through its public
    ``opacus.accountants.create_accountant``; at most ``RDP_LEVELS`` distinct values."""

    name: str
    bound: bool
    warning: str | None = None
    constant_noise: bool = False  # Opacus' analysis takes one noise value only

    def levels(self, noise: np.ndarray, max_levels: int) -> tuple[np.ndarray, np.ndarray]:
        return _anchored_levels(noise, min(max_levels, RDP_LEVELS))

    def epsilon(self, hist: History, *, delta: float) -> float:
        _check("noise_multiplier", not self.constant_noise or len(hist) == 1,
               f"constant for accountant={self.name!r}", f"{len(hist)} distinct values")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Opacus' own warning at creation; ours is said
            acc = create_accountant(self.name)
        acc.history = list(hist)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
            return float(acc.get_epsilon(delta=delta))


TABLE: dict[str, Accountant] = {
    "rdp": OpacusAccountant(name="rdp", bound=True),
    "gdp": OpacusAccountant(name="gdp", bound=False, warning=GDP_WARNING, constant_noise=True),
    "prv": PRV(),
}
"""Adding an accountant is one row here (and its test against a reference accountant)."""
ACCOUNTANTS = tuple(TABLE)  # ("rdp", "gdp", "prv")
BOUNDS = tuple(sorted(name for name, row in TABLE.items() if row.bound))  # ("prv", "rdp")


def history(noise: np.ndarray, sample_rate: float, max_levels: int = MAX_LEVELS,
            accountant: str = "prv") -> History:
    """Opacus accountant history: one ``(sigma, q, count)`` entry per (rounded) level."""
    values, counts = TABLE[accountant].levels(noise, max_levels)
    return [(float(s), float(sample_rate), int(n)) for s, n in zip(values, counts)]


def epsilon_of_history(hist: History, *, delta: float, accountant: str) -> float:
    """Epsilon of an explicit Opacus history (no validation; used by the guard)."""
    if not hist:
        return 0.0
    row = TABLE[accountant]
    if row.warning is not None:
        warnings.warn(row.warning, stacklevel=3)
    return row.epsilon(hist, delta=delta)


def epsilon(*, sample_rate: float, noise_multiplier: float | Sequence[float], steps: int,
            delta: float, accountant: str = "prv", max_levels: int = MAX_LEVELS) -> float:
    """Epsilon spent by ``steps`` Poisson-subsampled Gaussian steps at ``delta``.

    ``noise_multiplier`` is a float or one value per step. ``accountant='gdp'`` is a CLT
    approximation (Dong et al. 2019), not a bound, and warns when used.
    """
    validate(sample_rate=sample_rate, steps=steps, delta=delta, accountant=accountant)
    noise = noise_schedule(noise_multiplier, steps)
    hist = history(noise, sample_rate, max_levels, accountant)
    return epsilon_of_history(hist, delta=delta, accountant=accountant)


def schedule_from_profile(sigma: float, steps: int,
                          noise_profile: Callable[[float], float] | None) -> np.ndarray:
    """Per-step noise ``sigma * noise_profile(s / steps)`` (constant when profile is None)."""
    if noise_profile is None:
        return np.full(steps, float(sigma))
    return sigma * np.array([float(noise_profile(s / steps)) for s in range(steps)])
