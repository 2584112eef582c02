"""Training regimes: each decides how a batch becomes a loss and an update."""

from . import adversarial, dp  # noqa: F401  (register pgd_at, fgsm_rs, trades, dp)
from .base import REGIMES, Regime, TrainingSetup

__all__ = ["REGIMES", "Regime", "TrainingSetup"]
