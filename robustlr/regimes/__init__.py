"""Training regimes: each decides how a batch becomes a loss and an update."""

# importing them registers pgd_at, fgsm_rs, trades, dp and gaussian
from robustlr.regimes import adversarial, dp, gaussian  # noqa: F401
from robustlr.regimes.base import REGIMES, Regime, TrainingSetup

__all__ = ["REGIMES", "Regime", "TrainingSetup"]
