"""Training regimes: each decides how a batch becomes a loss and an update."""

from . import adversarial  # noqa: F401  (registers pgd_at, fgsm_rs, trades)
from .base import REGIMES, Regime, TrainingSetup

__all__ = ["REGIMES", "Regime", "TrainingSetup"]
