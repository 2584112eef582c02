"""Backdoor probe: attack success rate (ASR) and robust accuracy on triggered inputs (RA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from robustlr.attacks.poisoning.metrics import backdoor_metrics
from robustlr.training.probes.base import Probe


class BackdoorProbe(Probe):
    """Attack success rate (ASR) and robust accuracy on triggered inputs (RA), per epoch."""

    def __init__(self, poison, test, batch_size: int):
        self.poison, self.test, self.batch_size = poison, test, batch_size
        self.asr: list[float] = []

    def _measure(self, model: nn.Module) -> dict[str, float]:
        x, y = self.test
        metrics = backdoor_metrics(model, x, y, self.poison, batch_size=self.batch_size)
        if metrics is None:  # the stage hands this probe only poisons that have a trigger
            raise TypeError(f"{type(self.poison).__name__} has no trigger to measure")
        return metrics

    def epoch(self, model: nn.Module) -> dict[str, float]:
        metrics = self._measure(model)
        self.asr.append(metrics["asr"])
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"asr": list(self.asr)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.asr = list(state["asr"])

    def final(self, model: nn.Module, trial_dir: Path | None) -> dict[str, Any]:
        if not self.asr:
            return {}
        metrics = self._measure(model)
        first = next((i + 1 for i, a in enumerate(self.asr) if a >= 0.5), None)
        # ASR and RA are shares of the test examples outside the target class
        outside = int((self.test[1] != self.poison.target).sum())
        return {"asr": metrics["asr"], "ra": metrics["ra"], "asr_best": max(self.asr),
                "backdoor_epoch": first, "asr_examples": outside}
