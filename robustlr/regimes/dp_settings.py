"""The DP regime's settings, typed and checked once, and the checks that need the data set.

``dp(...)`` in a config builds one frozen :class:`DPSettings`; every bad value is a one-line
``ValueError`` naming the setting (the config turns it into a ConfigError). What depends on
the training set size and on the rest of the trial's privacy ledger (delta below 1/N, a cap
that the other entries leave room in and that allows at least one step) is checked by
:func:`check_fits_data`, called before any run folder exists.

``max_epsilon``, ``target_epsilon`` and ``delta`` are on the trial's total (the ledger): DP-SGD
gets what the other entries (data statistics, private selection) leave, see :func:`budget`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from robustlr import schedules
from robustlr.privacy import ACCOUNTANTS, epsilon
from robustlr.privacy import engine as dp_engine
from robustlr.privacy.grad_sample.modes import MODES
from robustlr.privacy.ledger import Ledger
from robustlr.regimes.base import REGIMES

AUGMULT_MODES = tuple(name for name, row in MODES.items() if row.augmult)
"""Modes that materialize per-sample gradients, which augmentation multiplicity averages
(``("hooks", "functorch")``, from the modes' table)."""
SCOPES = ("training_data", "after_filter")
"""What the trial's epsilon covers: every training example (a poison filter is then refused),
or only the examples a poison filter kept (the filter's own pass over all of them is not
covered)."""


@dataclass(frozen=True, kw_only=True)
class DPSettings:
    """``dp(...)``: DP-SGD via Opacus; see :func:`robustlr.regimes.dp.dp`."""

    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    max_epsilon: float | None = None
    delta: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    noise_schedule: str | None = None
    clip_schedule: str | None = None
    grad_sample_mode: str = dp_engine.DEFAULT_MODE
    physical_batch_size: int | None = None
    poisson: bool = True
    adversarial_eps: float = 0.0
    adversarial_steps: int = 7
    augmult: int = 1
    scope: str = "training_data"

    def __post_init__(self) -> None:
        noise, target, cap = self.noise_multiplier, self.target_epsilon, self.max_epsilon
        if (noise is None) == (target is None):
            raise ValueError("give exactly one of noise_multiplier and target_epsilon")
        if not self.poisson and (target is not None or cap is not None):
            raise ValueError("poisson=false cannot be used with target_epsilon or max_epsilon: "
                             "fixed shuffled batches have no accounting here (the Poisson "
                             "analysis does not cover them, Chua et al. 2024); use poisson=true")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        if noise is not None and noise < 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {noise}")
        if noise == 0 and cap is not None:
            raise ValueError("max_epsilon needs noise: noise_multiplier 0 spends an infinite epsilon")
        if self.adversarial_eps < 0 or self.adversarial_steps < 1:
            raise ValueError(f"adversarial_eps must be >= 0 and adversarial_steps >= 1, got "
                             f"{self.adversarial_eps} and {self.adversarial_steps}")
        for name, value in (("target_epsilon", target), ("max_epsilon", cap)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if target and cap and cap < target:
            raise ValueError(f"max_epsilon ({cap}) must be >= target_epsilon ({target})")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")
        if self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, "
                             f"got {self.accountant!r}")
        modes = dp_engine.GRAD_SAMPLE_MODES
        if self.grad_sample_mode not in modes:
            raise ValueError(f"grad_sample_mode must be one of {', '.join(modes)}, "
                             f"got {self.grad_sample_mode!r}")
        if self.physical_batch_size is not None and self.physical_batch_size < 1:
            raise ValueError(f"physical_batch_size must be >= 1, got {self.physical_batch_size}")
        if self.augmult < 1:
            raise ValueError(f"augmult must be >= 1, got {self.augmult}")
        if self.augmult > 1 and self.grad_sample_mode not in AUGMULT_MODES:
            raise ValueError(f"augmult > 1 needs grad_sample_mode {' or '.join(AUGMULT_MODES)} "
                             "(an example's view gradients are averaged before clipping; the "
                             f"other modes never form them), got {self.grad_sample_mode!r}")
        for name in ("noise_schedule", "clip_schedule"):
            profile(getattr(self, name))  # a bad schedule spec fails here, not in a worker
        clip = profile(self.clip_schedule)  # a clip of 0 zeroes every gradient (step 0: warmup)
        zero = next((t / 1000 for t in range(1000) if not clip(t / 1000) > 0), None)
        if zero is not None:
            raise ValueError(f"clip_schedule {self.clip_schedule!r} is {clip(zero):g} at progress "
                             f"{zero:g}; a clip must stay above 0 (no warmup from 0)")

    @property
    def cap(self) -> float | None:
        """The hard cap on epsilon: ``max_epsilon``, else the target."""
        return self.max_epsilon or self.target_epsilon

    @property
    def bound_accountant(self) -> str:
        """The accountant that stops and calibrates: an upper bound (gdp is only reported)."""
        return "rdp" if self.accountant == "rdp" else "prv"

    def delta_for(self, dataset_size: int) -> float:
        return self.delta if self.delta is not None else 0.1 / dataset_size


def profile(spec: str | None):
    """A noise or clip schedule as a function of progress in [0, 1] (None: constant 1)."""
    if spec is None:
        return lambda progress: 1.0
    schedule = schedules.parse(spec)
    if schedule.metric_driven or schedule.optimizer_based:
        raise ValueError(f"noise and clip schedules must be functions of progress, not {spec!r}")
    return schedule


def settings_of(spec) -> DPSettings | None:
    """The settings of a ``dp(...)`` regime spec (already checked), None for other regimes."""
    parsed, kwargs = REGIMES.check(spec, ())  # the registry's coercions (int -> float...)
    return DPSettings(**kwargs) if parsed.name == "dp" else None


@dataclass(frozen=True)
class Budget:
    """What the trial's cap, target and delta leave DP-SGD once the other ledger entries are
    paid: each is the trial's figure less what those entries spend (basic composition)."""

    cap: float | None
    target: float | None
    delta: float


_NOTHING = Ledger()  # no entry before training


def _spent_by(prior: Ledger) -> str:
    return ", ".join(f"{e.name} {e.epsilon:g}" for e in prior.entries if e.epsilon or e.delta)


def budget(settings: DPSettings, *, dataset_size: int, prior: Ledger = _NOTHING) -> Budget:
    """DP-SGD's share of the trial's budget; ``ValueError`` when the entries spent before
    training (``prior``) leave it nothing, or the trial's delta is at or above 1/N."""
    n = dataset_size
    delta = settings.delta_for(n)
    if delta >= 1.0 / n:
        raise ValueError(f"delta must be below 1/N = {1.0 / n:.3g} (N = {n} training "
                         f"examples), got {delta}")
    cap, target = settings.cap, settings.target_epsilon
    for name, value in (("target_epsilon", target), ("max_epsilon", settings.max_epsilon)):
        if value is not None and prior.remaining(value) <= 0:
            raise ValueError(f"{name} {value:g} is on the trial's total, and the privacy-ledger "
                             f"entries before training already spend {prior.epsilon:g} of it "
                             f"({_spent_by(prior)}); raise {name} or make those entries "
                             "cheaper")
    if prior.delta >= delta:
        raise ValueError(f"delta {delta:.3g} is on the trial's total, and the privacy-ledger "
                         f"entries before training already spend {prior.delta:.3g} of it; "
                         "raise delta")
    return Budget(cap=None if cap is None else prior.remaining(cap),
                  target=None if target is None else prior.remaining(target),
                  delta=delta - prior.delta)


def check_fits_data(settings: DPSettings, *, dataset_size: int, batch_size: int,
                    prior: Ledger = _NOTHING) -> Budget:
    """DP-SGD's share of the budget; ``ValueError`` when these settings cannot train on
    ``dataset_size`` examples after the ledger entries ``prior``: delta at or above 1/N, a cap
    those entries already spend, or a cap whose remainder one step at the first step's noise
    already passes."""
    share = budget(settings, dataset_size=dataset_size, prior=prior)
    if settings.noise_multiplier is None or share.cap is None:
        return share  # a target is calibrated to fit; no cap without noise (checked above)
    sigma = settings.noise_multiplier * profile(settings.noise_schedule)(0.0)
    q = min(batch_size / dataset_size, 1.0)
    one_step = epsilon(sample_rate=q, noise_multiplier=sigma, steps=1, delta=share.delta,
                       accountant=settings.bound_accountant)
    if one_step > share.cap:
        assert settings.cap is not None
        left = "" if math.isclose(share.cap, settings.cap) else f" (it leaves DP-SGD {share.cap:.3g})"
        raise ValueError(f"max_epsilon {settings.cap:g} allows no step{left}: one step at "
                         f"noise_multiplier {sigma:g} (sample rate {q:.3g}, delta "
                         f"{share.delta:.3g}) costs epsilon {one_step:.3g}; raise the noise or "
                         "the cap")
    return share
