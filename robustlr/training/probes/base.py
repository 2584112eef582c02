"""The probe interface: a measurement the loop takes every epoch and once at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn


class Probe:
    """A no-op probe; subclasses override what they measure."""

    def epoch(self, model: nn.Module) -> dict[str, float]:
        """Numbers for this epoch's row of ``epochs.csv``."""
        return {}

    def final(self, model: nn.Module, trial_dir: Path | None) -> dict[str, Any]:
        """Fields for the trial's ``summary.json`` record, measured on the final model."""
        return {}

    def averaged(self, model: nn.Module) -> dict[str, float]:
        """Numbers for this epoch's row measured on the averaged weights (``avg_*``); the
        probe's own history is left alone."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What ``epoch`` has accumulated, for resume checkpoints (tensors, numbers, lists)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
