"""Training regimes: each decides how a batch becomes a loss and an update."""

from .base import REGIMES, Regime, TrainingSetup

__all__ = ["REGIMES", "Regime", "TrainingSetup"]
