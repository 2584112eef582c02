"""Which validation number chooses a trial's best epoch (and, in the report, its LR scale):
clean validation accuracy, or robust validation accuracy under adversarial training, where
the clean number keeps rising while robustness overfits (Rice, Wong & Kolter 2020)."""

from __future__ import annotations

from typing import Any

CLEAN, ROBUST = "val_acc", "monitor_val_robust_acc"
"""The summary fields the two choices read; ``best_epoch_by`` names the one used."""


def selects_robust(evaluation: Any, loss_kind: str) -> bool:
    """``evaluation.select`` resolved for a regime whose training loss is ``loss_kind``
    (``Regime.loss_kind``): "auto" selects on robust accuracy when the regime trains on
    attacked inputs and a per-epoch attack is configured to measure it."""
    if evaluation.select != "auto":
        return bool(evaluation.select == "robust")
    return evaluation.attack is not None and loss_kind == "robust"
