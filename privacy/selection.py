"""Choosing among private runs: what releasing one chosen model costs.

A model chosen among K candidate runs trained on the same private data is a post-processing
of all K runs and of the choice, so its epsilon is (adaptive composition, Dwork & Roth 2014,
Thm 3.16 and its adaptive form):

- the K runs' DP-SGD, composed by the accountant as one longer run (:func:`compose_runs`;
  composition commutes, so K runs of one history are that history repeated K times);
- plus the choice itself when it reads private data: report-noisy-max with Gumbel noise
  (:func:`report_noisy_max`), which *is* the exponential mechanism (Dwork & Roth 2014,
  Sec. 3.4; Durfee & Rogers 2019, arXiv:1905.04273), epsilon-DP for scores of sensitivity
  ``sensitivity``; a choice made on public data costs nothing (:func:`choice_entry`).

Liu & Talwar 2019 (arXiv:1811.07971) and Papernot & Steinke 2022 (arXiv:2110.03620) tune at a
cost close to one run's, but only when the number of runs is itself random (geometric,
truncated negative binomial or Poisson); a fixed grid, as robustlr runs, gets this
composition instead.

The generator is seeded by the caller (a reproducible report); like DP-SGD's noise in a
seeded run, the guarantee assumes the seed is unknown to whoever sees the result.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from .accounting.accountants import BOUNDS, History, epsilon, epsilon_of_history, history
from .ledger import Entry


def report_noisy_max(scores: Sequence[float], *, epsilon: float, sensitivity: float,
                     rng: np.random.Generator) -> int:
    """Index of the largest ``score + Gumbel(0, 2 * sensitivity / epsilon)``: the
    exponential mechanism with utility ``scores``, ``epsilon``-DP when every score moves by
    at most ``sensitivity`` between neighbouring datasets (any neighbouring relation)."""
    values = np.asarray(scores, dtype=float)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"scores must be a non-empty list of finite numbers, got {scores!r}")
    if not (epsilon > 0 and math.isfinite(epsilon)) or not sensitivity > 0:
        raise ValueError(f"epsilon and sensitivity must be finite and > 0, got {epsilon} and "
                         f"{sensitivity}")
    noisy = values + rng.gumbel(0.0, 2.0 * sensitivity / epsilon, size=values.size)
    return int(np.argmax(noisy))


def compose_runs(histories: Sequence[History], *, delta: float, accountant: str = "prv") -> float:
    """Epsilon at ``delta`` of releasing every run whose Opacus history (``(sigma, q,
    steps)`` levels) is given: the runs' steps composed by the accountant as one run.

    Runs at one sample rate go through :func:`privacy.epsilon` (PRV by default, the
    per-step noise list of all runs together); runs at several sample rates through Opacus'
    RDP accountant, which composes mixed histories. ``gdp`` is not a bound: refused."""
    if accountant not in BOUNDS:
        raise ValueError(f"accountant must be one of {', '.join(BOUNDS)} (a bound), got "
                         f"{accountant!r}")
    levels = [(float(s), float(q), int(n)) for run in histories for s, q, n in run if n > 0]
    if not levels:
        return 0.0
    if any(s <= 0 for s, _, _ in levels):
        return math.inf  # a step without noise: no DP guarantee
    rates = {q for _, q, _ in levels}
    if len(rates) == 1:
        noise = np.concatenate([np.full(n, s) for s, _, n in levels])
        return epsilon(sample_rate=rates.pop(), noise_multiplier=noise.tolist(), steps=noise.size,
                       delta=delta, accountant=accountant)
    merged: Counter[tuple[float, float]] = Counter()
    for q in rates:  # RDP costs ~0.1 s a level: its few rounded-down levels per rate
        noise = np.concatenate([np.full(n, s) for s, rate, n in levels if rate == q])
        for s, rate, n in history(noise, q, accountant="rdp"):
            merged[(s, rate)] += n
    return epsilon_of_history([(s, q, n) for (s, q), n in merged.items()], delta=delta,
                              accountant="rdp")


def candidates_entry(histories: Sequence[History], *, delta: float,
                     accountant: str = "prv") -> Entry:
    """The ledger entry of releasing the runs a choice read (their DP-SGD composed)."""
    eps = compose_runs(histories, delta=delta, accountant=accountant)
    return Entry(name="candidate_runs", mechanism="composition", epsilon=eps, delta=delta,
                 detail={"runs": len(histories), "accountant": accountant,
                         "steps": sum(n for run in histories for _, _, n in run)})


def basic_candidates_entry(epsilons: Sequence[float], deltas: Sequence[float]) -> Entry:
    """The same release when the runs' histories are unknown: basic composition (epsilons
    and deltas add), an upper bound whatever the runs were."""
    return Entry(name="candidate_runs", mechanism="composition", epsilon=math.fsum(epsilons),
                 delta=min(1.0, math.fsum(deltas)),
                 detail={"runs": len(epsilons), "accountant": "basic composition"})


def choice_entry(name: str, *, candidates: int, epsilon: float | None, public: bool = False,
                 detail: dict | None = None) -> Entry:
    """The choice's own cost: report-noisy-max at ``epsilon``, nothing when it read only
    public data (``public``), no finite epsilon when it read private data exactly
    (``epsilon`` None)."""
    info = {"candidates": candidates, **(detail or {})}
    if public:
        return Entry(name=name, mechanism="public", epsilon=0.0, detail=info)
    if epsilon is None:
        return Entry(name=name, mechanism="none", epsilon=math.inf, detail=info)
    return Entry(name=name, mechanism="report_noisy_max", epsilon=epsilon, detail=info)
