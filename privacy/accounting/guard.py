"""A hard privacy budget: refuse any DP-SGD step that would take epsilon past a cap.

Checking the chosen accountant before every step is exact but slow for PRV (0.2-1.5 s per
call, docs/facts.md). The guard instead keeps a *certificate*: a planned continuation of the
recorded history (by default: the current noise repeated) whose epsilon, computed by the
same accountant, is at most ``max_epsilon - margin`` for its first ``k`` steps. Since
epsilon only grows when noise falls, any step whose noise is at least the planned one is
admitted with a counter check. ``margin`` (2 x PRV's ``eps_error``; 0 for RDP and at
sample rate 1, monotone closed forms) absorbs PRV's discretisation error between two
histories. When no
certificate can be had (the last few steps before the cap) each step is checked exactly on
the actual history, so the reported epsilon never exceeds the cap.

Cost: each new certificate takes about 2 log2(k) accountant calls (k: steps it covers).
Give a known schedule to :meth:`BudgetGuard.plan_steps` once; without a plan the current
noise is certified as if held constant, renewed whenever the noise falls below it (so a
noise that falls at every step costs a search per step: plan it instead).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from .accountants import BOUNDS, MAX_LEVELS, _check, epsilon_of_history, history, validate
from .composition import EPS_ERROR

PRV_EPS_ERROR = EPS_ERROR
MAX_CERTIFIED = 1 << 20
MAX_PLAN_FIRST = 1 << 17  # plans up to this long are first tried whole


class BudgetGuard:
    """Hard cap ``max_epsilon`` at ``delta`` for steps of sampling rate ``sample_rate``."""

    def __init__(self, *, max_epsilon: float, delta: float, sample_rate: float,
                 accountant: str = "prv", max_levels: int = MAX_LEVELS):
        validate(sample_rate=sample_rate, steps=0, delta=delta, accountant=accountant)
        _check("max_epsilon", max_epsilon > 0, "> 0", max_epsilon)
        _check("accountant", accountant in BOUNDS, f"one of {list(BOUNDS)} (an upper bound; "
               "gdp is an estimate and never stops a run)", accountant)
        self.max_epsilon, self.delta, self.sample_rate = max_epsilon, delta, sample_rate
        self.accountant, self.max_levels = accountant, max_levels
        # PRV's discretisation error between two histories; RDP and rate 1 (exact) are monotone
        self.margin = 2 * PRV_EPS_ERROR if accountant == "prv" and sample_rate < 1 else 0.0
        self._steps: list[float] = []
        self._plan = np.empty(0)  # certified continuation of the recorded steps
        self._certified = 0  # how many of the planned steps are certified
        self._used = 0  # planned steps consumed since the certificate was made
        self._spent_cache: tuple[int, float] | None = None
        self._near_cap = False
        self.evaluations = 0  # accountant calls so far (to check the cost)

    def _eps(self, extra: Sequence[float] | np.ndarray) -> float:
        self.evaluations += 1
        noise = np.concatenate([np.asarray(self._steps, float), np.asarray(extra, float)])
        hist = history(noise, self.sample_rate, self.max_levels, self.accountant)
        return epsilon_of_history(hist, delta=self.delta, accountant=self.accountant)

    def plan_steps(self, noise_multipliers: Sequence[float] | np.ndarray) -> int:
        """Certify a known schedule of future steps; return how many of them fit the cap."""
        plan = np.asarray(noise_multipliers, dtype=float)
        _check("noise_multipliers", plan.ndim == 1 and bool((plan > 0).all()),
               "a 1-d sequence of positive floats", plan.shape)
        cap = self.max_epsilon - self.margin
        fits = lambda k: k == 0 or self._eps(plan[:k]) <= cap  # noqa: E731
        if len(plan) <= MAX_PLAN_FIRST and fits(len(plan)):
            # a run calibrated below the cap fits whole: one accountant call, not a search
            self._plan, self._certified, self._used = plan, len(plan), 0
            return len(plan)
        good, bad = 0, len(plan) + 1
        k = 1
        while k < bad and fits(k):  # exponential search, then bisection
            good, k = k, 2 * k
        bad = min(bad, k)
        while bad - good > 1:
            mid = (good + bad) // 2
            good, bad = (mid, bad) if fits(mid) else (good, mid)
        self._plan, self._certified, self._used = plan, good, 0
        return good

    def allows(self, noise_multiplier: float) -> bool:
        """Whether one more step at ``noise_multiplier`` keeps spent epsilon <= the cap."""
        _check("noise_multiplier", noise_multiplier > 0, "> 0", noise_multiplier)
        i = self._used
        if i < self._certified and noise_multiplier >= self._plan[i]:
            return True
        if not self._near_cap:
            # Certify the current noise held constant: one search covers a constant run
            # up to the cap. Falling noise renews it at every drop; use plan_steps().
            if self.plan_steps(np.full(MAX_CERTIFIED, float(noise_multiplier))) >= 1:
                return True
            self._near_cap = True  # no certificate left: check exactly from now on
        return self._eps([noise_multiplier]) <= self.max_epsilon  # exact, near the cap

    def record(self, noise_multiplier: float) -> None:
        """Record one step actually taken at ``noise_multiplier``."""
        _check("noise_multiplier", noise_multiplier > 0, "> 0", noise_multiplier)
        i = self._used
        if not (i < self._certified and noise_multiplier >= self._plan[i]):
            self._certified = 0  # the step left the certified plan
        self._steps.append(float(noise_multiplier))
        self._used += 1

    def spent(self) -> float:
        """Epsilon of the recorded steps under the chosen accountant (cached)."""
        n = len(self._steps)
        if self._spent_cache is None or self._spent_cache[0] != n:
            self._spent_cache = (n, self._eps([]))
        return self._spent_cache[1]

    @property
    def steps(self) -> int:
        return len(self._steps)

    def state_dict(self) -> dict:
        """The recorded steps and the certificate, for resume checkpoints (lists and numbers
        only): a resumed guard admits exactly the steps the uninterrupted one would have.
        Only the certified steps not yet used are kept: a renewed certificate is planned
        MAX_CERTIFIED steps long, and the steps before ``used`` are never read again."""
        remaining = self._plan[self._used:max(self._certified, self._used)]
        return {"steps": list(self._steps), "plan": remaining.tolist(),
                "certified": max(self._certified - self._used, 0), "used": 0,
                "near_cap": self._near_cap}

    def load_state_dict(self, state: dict) -> None:
        self._steps = [float(sigma) for sigma in state["steps"]]
        self._plan = np.asarray(state["plan"], dtype=float)
        self._certified, self._used = int(state["certified"]), int(state["used"])
        self._near_cap = bool(state["near_cap"])
        self._spent_cache = None

    def noise_counts(self) -> Counter:
        return Counter(self._steps)
