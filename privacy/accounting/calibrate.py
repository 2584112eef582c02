"""Noise calibration: the base sigma whose schedule spends (just under) a target epsilon.

Epsilon falls monotonically as every step's noise grows, so the base multiplier is found by
bracketing and a safeguarded secant search (Illinois variant of regula falsi) on
``log epsilon`` against ``log sigma``. The upper end of the bracket always satisfies
``epsilon <= target``, so the answer never overspends even if the search stops early.

Cost: one PRV evaluation of a schedule takes about a second or more (see
``benchmarks/bench_accounting.py``), so the bracket is first found with the cheap RDP
accountant and then refined with the chosen one; calibrate once per run, never per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .accountants import BOUNDS, MAX_LEVELS, _check, epsilon_of_history, history, schedule_from_profile, validate

MAX_EVALUATIONS = 60


def _search(spend: Callable[[float], float], target: float, tolerance: float,
            guess: float) -> float:
    """Smallest-found sigma with ``target * (1 - tolerance) <= spend(sigma) <= target``."""
    lo, hi = guess, guess
    f_lo = f_hi = spend(guess)
    evaluations = 1
    while f_hi > target:  # expand upwards until feasible
        lo, f_lo, hi = hi, f_hi, hi * 2.0
        f_hi, evaluations = spend(hi), evaluations + 1
    while f_lo <= target:  # expand downwards until infeasible
        if f_lo >= target * (1 - tolerance):
            return lo
        hi, f_hi, lo = lo, f_lo, lo / 2.0
        f_lo, evaluations = spend(lo), evaluations + 1
    # Illinois regula falsi on y = log(eps) - log(aim); lo is infeasible, hi feasible.
    aim = target * (1 - tolerance / 2)
    y_lo, y_hi = math.log(f_lo / aim), math.log(max(f_hi, 1e-300) / aim)
    side = 0
    while f_hi < target * (1 - tolerance) and evaluations < MAX_EVALUATIONS:
        x_lo, x_hi = math.log(lo), math.log(hi)
        x = x_hi - y_hi * (x_hi - x_lo) / (y_hi - y_lo)
        if not x_lo < x < x_hi:
            x = 0.5 * (x_lo + x_hi)
        f, evaluations = spend(math.exp(x)), evaluations + 1
        y = math.log(max(f, 1e-300) / aim)
        if f > target:
            lo, y_lo = math.exp(x), y
            y_hi = y_hi / 2 if side == -1 else y_hi  # same side twice: damp the other end
            side = -1
        else:
            hi, f_hi, y_hi = math.exp(x), f, y
            y_lo = y_lo / 2 if side == 1 else y_lo
            side = 1
    return hi


def calibrate(*, target_epsilon: float, sample_rate: float, steps: int, delta: float,
              accountant: str = "prv", noise_profile: Callable[[float], float] | None = None,
              tolerance: float = 0.01, max_levels: int = MAX_LEVELS) -> float:
    """Base noise multiplier sigma for a run with per-step noise ``sigma * profile(s/steps)``.

    The returned sigma spends ``epsilon`` with
    ``target_epsilon * (1 - tolerance) <= epsilon <= target_epsilon`` under ``accountant``
    (relative ``tolerance``). ``noise_profile`` maps progress in [0, 1) to a positive
    factor; ``None`` means constant noise.
    """
    validate(sample_rate=sample_rate, steps=steps, delta=delta, accountant=accountant)
    _check("target_epsilon", target_epsilon > 0, "> 0", target_epsilon)
    _check("tolerance", 0 < tolerance < 1, "in (0, 1)", tolerance)
    _check("steps", steps >= 1, "an integer >= 1 for calibration", steps)
    _check("accountant", accountant in BOUNDS, f"one of {list(BOUNDS)} (an upper bound; gdp "
           "is an estimate and never calibrates)", accountant)

    def spend_with(name: str) -> Callable[[float], float]:
        def spend(sigma: float) -> float:
            noise = schedule_from_profile(sigma, steps, noise_profile)
            _check("noise_profile", bool(np.all(np.isfinite(noise) & (noise > 0))),
                   "finite and positive at every step", "<= 0 or not finite")
            hist = history(noise, sample_rate, max_levels, name)
            return epsilon_of_history(hist, delta=delta, accountant=name)
        return spend

    guess = _search(spend_with("rdp"), target_epsilon, 0.05, 1.0)  # cheap bracket
    if accountant == "rdp" and tolerance >= 0.05:
        return guess
    return _search(spend_with(accountant), target_epsilon, tolerance, guess)
