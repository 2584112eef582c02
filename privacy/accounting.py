"""Privacy accounting for DP-SGD with a noise schedule, on Opacus' accountants.

DP-SGD (Abadi et al. 2016, arXiv:1607.00133) releases, per step, a Poisson-subsampled
Gaussian mechanism. Its cost is composed by one of Opacus' accountants:

- ``prv`` (default): numerical composition of privacy loss random variables
  (Gopi et al. 2021, arXiv:2106.02848); tight, an upper bound up to ``eps_error``.
- ``rdp``: Renyi DP (Mironov 2017; Mironov et al. 2019, arXiv:1908.10530); looser, cheap.
- ``gdp``: Gaussian DP (Dong et al. 2019, arXiv:1905.02383) through the central limit
  theorem. It is an *approximation, not a bound*: it can under-report epsilon.

A schedule is given as one noise multiplier per step. Composition is commutative, so equal
values are merged into one history entry ``(sigma, q, count)`` wherever they occur. Opacus'
PRV costs about 0.3-1.5 s per *distinct* value, so when a schedule has more than
``max_distinct`` values each sigma is rounded *down* onto a geometric grid: less noise
never spends less budget, so the result stays an upper bound (a slightly looser one).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from opacus.accountants.registry import _ACCOUNTANTS

ACCOUNTANTS = tuple(_ACCOUNTANTS)  # ("rdp", "gdp", "prv"): Opacus' own lookup table
MAX_DISTINCT = 12
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
        noise = np.full(int(steps), float(noise_multiplier))
    else:
        noise = np.asarray(noise_multiplier, dtype=float)
        _check("noise_multiplier", noise.shape == (steps,), f"a float or a sequence of "
               f"length steps={steps}", f"sequence of shape {noise.shape}")
    _check("noise_multiplier", bool(np.all(noise > 0)), "> 0 at every step", noise.min(initial=1))
    return noise


def history(noise: np.ndarray, sample_rate: float, max_distinct: int = MAX_DISTINCT) -> History:
    """Opacus accountant history: one ``(sigma, q, count)`` entry per distinct sigma."""
    values = np.unique(noise)
    if len(values) > max_distinct:
        # Round down onto a geometric grid spanning the schedule (conservative, see module doc).
        lo, hi = float(values[0]), float(values[-1])
        ratio = (hi / lo) ** (1.0 / (max_distinct - 1))
        index = np.floor(np.log(noise / lo) / math.log(ratio) + 1e-9)
        noise = lo * ratio ** np.clip(index, 0, max_distinct - 1)
    counts = Counter(noise.tolist())
    return [(float(s), float(sample_rate), int(n)) for s, n in sorted(counts.items())]


def epsilon_of_history(hist: History, *, delta: float, accountant: str) -> float:
    """Epsilon of an explicit Opacus history (no validation; used by the guard)."""
    if not hist:
        return 0.0
    if accountant == "gdp":
        warnings.warn(GDP_WARNING, stacklevel=3)
        _check("noise_multiplier", len(hist) == 1, "constant for accountant='gdp'",
               f"{len(hist)} distinct values")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Opacus' own GDP warning; ours is above
            acc = _ACCOUNTANTS["gdp"]()
    else:
        acc = _ACCOUNTANTS[accountant]()
    acc.history = list(hist)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return float(acc.get_epsilon(delta=delta))


def epsilon(*, sample_rate: float, noise_multiplier: float | Sequence[float], steps: int,
            delta: float, accountant: str = "prv", max_distinct: int = MAX_DISTINCT) -> float:
    """Epsilon spent by ``steps`` Poisson-subsampled Gaussian steps at ``delta``.

    ``noise_multiplier`` is a float or one value per step. ``accountant='gdp'`` is a CLT
    approximation (Dong et al. 2019), not a bound, and warns when used.
    """
    validate(sample_rate=sample_rate, steps=steps, delta=delta, accountant=accountant)
    noise = noise_schedule(noise_multiplier, steps)
    hist = history(noise, sample_rate, max_distinct)
    return epsilon_of_history(hist, delta=delta, accountant=accountant)


def schedule_from_profile(sigma: float, steps: int,
                          noise_profile: Callable[[float], float] | None) -> np.ndarray:
    """Per-step noise ``sigma * noise_profile(s / steps)`` (constant when profile is None)."""
    if noise_profile is None:
        return np.full(steps, float(sigma))
    return sigma * np.array([float(noise_profile(s / steps)) for s in range(steps)])
