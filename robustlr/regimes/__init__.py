"""Training regimes: each decides how a batch becomes a loss and an update."""

from robustlr.regimes import adversarial, dp  # noqa: F401  (register pgd_at, fgsm_rs, trades, dp)
from robustlr.regimes.base import REGIMES, Regime, TrainingSetup

__all__ = ["REGIMES", "Regime", "TrainingSetup"]
