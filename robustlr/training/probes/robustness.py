"""Robustness probes: a per-epoch *monitor* (the cheap attack on fixed, seeded subsets: fields
``monitor_*``) for trajectories, robust-overfitting and catastrophic-overfitting detection, and
the final attack cascade on the final and the best-robust model (AutoAttack-style: each attack
runs only on the points still correct).

A trial has ONE headline robust accuracy, ``robust_acc``: the strongest evaluation run on it,
the final cascade on ``final_subset`` (all) test examples when configured, else the monitor's
last value; ``robust_eval`` and ``robust_examples`` say which it was."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustlr.attacks import FGSM, cascade, expand_stages, sanity
from robustlr.attacks.autoattack import stage_accuracies
from robustlr.attacks.corruptions import corruption_accuracy
from robustlr.catalog import ATTACKS
from robustlr.spec import parse
from robustlr.training.probes.base import Probe

# Catastrophic overfitting (Wong, Rice & Kolter 2020): PGD accuracy at the last epoch is below
# this share of its best (which must have been meaningful) while FGSM accuracy stays this far
# above. Read at the last epoch: a dip the run recovered from (seen in the LR warm-up of
# wong_fgsm_rs_mnist, PGD 13% -> 6% -> 88%) is not a collapsed model.
_COLLAPSE_SHARE, _MEANINGFUL, _FGSM_MARGIN = 0.5, 0.1, 0.3
# A run can also overfit from its first epoch and never show a fall: PGD accuracy never
# reaches _MEANINGFUL while the model resists FGSM. A wider margin than a fall's keeps a model
# that is merely weak against a multi-step attack from being flagged.
_NEVER_ROBUST_MARGIN = 0.5


def fixed_subset(x: torch.Tensor, y: torch.Tensor, size: int, seed: int):
    """The same subset for every trial and epoch, so trajectories compare like for like."""
    if size >= len(y):
        return x, y
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:size]
    return x[order], y[order]


def catastrophic_overfitting(robust: list[float], fgsm: list[float]) -> bool:
    """True when the last epoch's monitor PGD accuracy has collapsed from its best while FGSM
    accuracy held, or when PGD accuracy never became meaningful while FGSM accuracy ended far
    above it (overfitting from the start: the single-step attack the model trains on no
    longer finds its weaknesses)."""
    epochs = list(zip(robust, fgsm))
    if not epochs:
        return False
    best = max(pgd_acc for pgd_acc, _ in epochs)
    final_pgd, final_fgsm = epochs[-1]
    if best < _MEANINGFUL:
        return final_fgsm - final_pgd > _NEVER_ROBUST_MARGIN
    return final_pgd < _COLLAPSE_SHARE * best and final_fgsm - final_pgd > _FGSM_MARGIN


class CorruptionProbe(Probe):
    """Accuracy under common corruptions at three severities, at the end of training."""

    def __init__(self, *, test, seed: int, batch_size: int):
        self.test, self.seed, self.batch_size = test, seed, batch_size

    def final(self, model: nn.Module, trial_dir: Path | None) -> dict[str, Any]:
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(self.seed)
        results = corruption_accuracy(model, *self.test, generator=generator,
                                      batch_size=self.batch_size)
        return {"corruption_acc": results.pop("mean"), "corruption": results}


class RobustnessProbe(Probe):
    def __init__(self, *, attack: str, final: list[str], test, val, subset: int, seed: int,
                 sanity_checks: bool, batch_size: int, select_robust: bool = False,
                 final_subset: int | None = None):
        self.attack_spec, self.attack = str(parse(attack)), ATTACKS.build(attack)
        eps = getattr(self.attack, "eps", 0.0)
        self.fgsm = FGSM(eps=eps)
        self.final_specs = [str(parse(s)) for s in final]
        self.test, self.val = test, val
        self.test_subset = fixed_subset(*test, subset, seed)
        # validation robust accuracy costs as much again; it is measured only to select on it
        self.val_subset = fixed_subset(*val, subset, seed + 1) if select_robust else None
        self.final_test = fixed_subset(*test, final_subset, seed) if final_subset else test
        self.sanity_checks = sanity_checks
        self.batch_size, self.seed = batch_size, seed
        self.history: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_val, self.best_index = -1.0, 0

    def _robust(self, model: nn.Module, x, y, attack) -> float:
        if len(y) == 0:
            return float("nan")
        return cascade(model, x, y, [("attack", attack)], batch_size=self.batch_size).robust_acc

    def epoch(self, model: nn.Module) -> dict[str, float]:
        row = {"monitor_robust_acc": self._robust(model, *self.test_subset, self.attack),
               "monitor_fgsm_acc": self._robust(model, *self.test_subset, self.fgsm)}
        selection = row["monitor_robust_acc"]  # without validation selection: test subset (optimistic)
        if self.val_subset is not None and len(self.val_subset[1]):
            row["monitor_val_robust_acc"] = selection = self._robust(model, *self.val_subset,
                                                                     self.attack)
        if selection > self.best_val:  # keep the best-robust weights for the final cascade
            self.best_val, self.best_index = selection, len(self.history)
            self.best_state = copy.deepcopy(model.state_dict())
        self.history.append(row)
        return row

    def averaged(self, model: nn.Module) -> dict[str, float]:
        return {"avg_monitor_robust_acc": self._robust(model, *self.test_subset, self.attack)}

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(row) for row in self.history], "best_state": self.best_state,
                "best_val": self.best_val, "best_index": self.best_index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [dict(row) for row in state["history"]]
        self.best_state, self.best_val = state["best_state"], state["best_val"]
        self.best_index = state["best_index"]

    def final(self, model: nn.Module, trial_dir: Path | None) -> dict[str, Any]:
        """The monitor's trajectory fields, then the headline: ``robust_acc`` is the strongest
        evaluation run on the trial (the final cascade when configured, else the monitor)."""
        monitor = [r["monitor_robust_acc"] for r in self.history]
        if not monitor:
            return {}
        best_index = self.best_index
        summary: dict[str, Any] = {
            "monitor_attack": self.attack_spec, "monitor_examples": len(self.test_subset[1]),
            "monitor_robust_acc": monitor[-1],
            "monitor_robust_acc_best": monitor[best_index],
            "monitor_robust_acc_max": max(monitor),
            "best_robust_epoch": best_index + 1,
            "catastrophic_overfitting": catastrophic_overfitting(
                monitor, [r["monitor_fgsm_acc"] for r in self.history]),
            "robust_acc": monitor[-1], "robust_acc_best": monitor[best_index],
            "robust_eval": f"monitor {self.attack_spec}",
            "robust_examples": len(self.test_subset[1]),
        }
        validation = [r["monitor_val_robust_acc"] for r in self.history if "monitor_val_robust_acc" in r]
        if validation:  # measured to select on it: the report's LR choice reads the last one
            summary["monitor_val_robust_acc"] = validation[-1]
        if self.final_specs:
            summary.update(self._final_cascades(model))
        summary["robust_gap"] = summary["robust_acc_best"] - summary["robust_acc"]
        if self.sanity_checks:
            eps = getattr(self.attack, "eps", 0.0)
            summary["warnings"] = sanity.run_checks(model, *self.test_subset, eps=eps,
                                                    seed=self.seed) if eps > 0 else []
        return summary

    def _final_cascades(self, model: nn.Module) -> dict[str, Any]:
        # AutoAttack splits into its sub-attacks so the accuracy after each one is kept
        attacks = expand_stages([(spec, ATTACKS.build(spec)) for spec in self.final_specs])
        final = cascade(model, *self.final_test, attacks, batch_size=self.batch_size)
        if self.best_index == len(self.history) - 1:
            best = final  # the best epoch is the last: the same weights, attacked once
        else:
            best_model = copy.deepcopy(model)
            best_model.load_state_dict(self.best_state)
            best = cascade(best_model, *self.final_test, attacks, batch_size=self.batch_size)
        return {"final_attacks": self.final_specs,
                "cascade": {spec: acc for spec, acc in final.steps},
                "cascade_best": {spec: acc for spec, acc in best.steps},
                "robust_acc": final.robust_acc, "robust_acc_best": best.robust_acc,
                "robust_eval": "cascade " + " > ".join(self.final_specs),
                "robust_examples": len(self.final_test[1]),
                "robust_per_class_acc": final.robust_per_class,
                **stage_accuracies(final.steps)}
