"""Certified robustness probe: randomized smoothing (Cohen et al. 2019) on the final model,
beside the empirical L2 robust accuracy at the same radii, so both sit on one axis.

Summary fields (fractions in [0, 1]; radius ``r`` is written ``r0``, ``r0_25``, ``r0_5``,
``r0_75``, ``r1`` so that every name is an identifier):

- ``certified_acc_r*``: share of the certified subset predicted correctly by the smoothed
  classifier with a certified L2 radius >= r (abstentions count as wrong);
- ``avg_certified_radius``: mean certified radius, 0 for wrong or abstained examples;
- ``certified_abstain_rate``: share of abstentions;
- ``empirical_l2_acc_r*`` (r > 0): accuracy of the base model under 20-step L2 PGD of radius
  r on the same examples, an upper bound on its robustness at that radius;
- ``certify_sigma``, ``certify_examples``, ``certify_seconds``; ``certify_train_sigma`` is the
  sigma of a ``gaussian`` training regime, absent when the model was not trained with noise
  (the report warns then: certification of such a model is allowed but usually near zero).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from torch import nn

from robustlr.attacks import PGD, cascade
from robustlr.attacks.certify import RADII, average_certified_radius, certified_accuracy, certify
from robustlr.spec import parse
from robustlr.training.probes.base import Probe
from robustlr.training.probes.robustness import fixed_subset

_PGD_STEPS = 20


def radius_field(prefix: str, radius: float) -> str:
    """``certified_acc`` and 0.25 -> ``certified_acc_r0_25``."""
    return f"{prefix}_r{radius:g}".replace(".", "_")


def trained_sigma(regime: str) -> float | None:
    spec = parse(regime)
    return float(spec.kwargs.get("sigma", 0.25)) if spec.name == "gaussian" else None


class CertifyProbe(Probe):
    def __init__(self, *, settings, test, seed: int, regime: str, batch_size: int):
        self.settings, self.seed, self.batch_size = settings, seed, batch_size
        self.test = fixed_subset(test[0], test[1], settings.subset, seed)
        self.train_sigma = trained_sigma(regime)

    def final(self, model: nn.Module, trial_dir: Path | None) -> dict[str, Any]:
        x, y = self.test
        s = self.settings
        started = time.perf_counter()
        result = certify(model, x, sigma=s.sigma, n0=s.n0, n=s.n, alpha=s.alpha,
                         batch_size=s.batch_size, seed=self.seed)
        summary: dict[str, Any] = {
            radius_field("certified_acc", r): acc
            for r, acc in certified_accuracy(result, y, RADII).items()}
        summary["avg_certified_radius"] = average_certified_radius(result, y)
        summary["certified_abstain_rate"] = (result.prediction < 0).double().mean().item()
        summary["certify_seconds"] = time.perf_counter() - started
        summary.update(certify_sigma=s.sigma, certify_examples=len(y))
        if self.train_sigma is not None:
            summary["certify_train_sigma"] = self.train_sigma
        for radius in RADII[1:]:
            attack = PGD(eps=radius, steps=_PGD_STEPS, norm="l2", seed=self.seed)
            accuracy = cascade(model, x, y, [("pgd_l2", attack)], batch_size=self.batch_size)
            summary[radius_field("empirical_l2_acc", radius)] = accuracy.robust_acc
        return summary


__all__ = ["CertifyProbe", "radius_field", "trained_sigma"]
