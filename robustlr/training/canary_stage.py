"""The one-run canary audit of a DP trial (``evaluation.privacy_audit``; Steinke, Nasr &
Jagielski 2023, see :mod:`robustlr.privacy.audit.one_run`).

Before training, ``canaries`` examples are drawn from the training split with the trial's
seed, given a random wrong label, and each is kept in the training set with probability 1/2
(the rest are not trained on in any form). The audited model is therefore the one trained on
the remaining training examples plus the included canaries — the data set DP-SGD's guarantee
(and its delta, 0.1 / N by default) is stated for. After training, each canary is scored by
its loss on the wrong label; the bound and a flag (the bound above the trial's ``epsilon``)
join the summary.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustlr.data import DataBundle
from robustlr.privacy.audit import one_run as audit_one_run
from robustlr.spec import parse
from robustlr.training.probes.base import Probe

# Canary choices draw from their own stream so they do not shift the training batches.
_CANARY_SEED_OFFSET = 7919


class CanaryProbe(Probe):
    """Scores the canaries on the final model; :func:`finish` turns them into the bound."""

    def __init__(self, canaries: audit_one_run.Canaries, batch_size: int):
        self.canaries, self.batch_size = canaries, batch_size
        self.scores: np.ndarray | None = None

    def final(self, model: nn.Module, trial_dir: Path | None) -> dict[str, Any]:
        self.scores = audit_one_run.canary_scores(model, self.canaries, self.batch_size)
        return {}


@dataclass
class CanaryStage:
    bundle: DataBundle  # what the trial trains on: the split less the canaries, plus the included
    probed: DataBundle  # the same without any canary, for the other probes (membership)
    probe: CanaryProbe | None
    confidence: float = 0.95


def applies(config, trial) -> bool:
    return config.evaluation.privacy_audit is not None and parse(trial.regime).name == "dp"


def prepare(config, trial, bundle: DataBundle) -> CanaryStage:
    """Canaries in the training split as ``config.evaluation.privacy_audit`` asks; a no-op for
    trials it does not audit."""
    if not applies(config, trial):
        return CanaryStage(bundle, bundle, None)
    settings = config.evaluation.privacy_audit
    x, y = bundle.train
    if settings.canaries > len(y) // 2:
        raise ValueError(f"evaluation.privacy_audit.canaries must be at most half the training "
                         f"split ({len(y) // 2}), got {settings.canaries}")
    generator = torch.Generator().manual_seed(trial.seed + _CANARY_SEED_OFFSET)
    canaries = audit_one_run.mislabeled_canaries(x, y, count=settings.canaries,
                                                 num_classes=bundle.num_classes,
                                                 generator=generator)
    rest = torch.ones(len(y), dtype=torch.bool)
    rest[canaries.index] = False
    kept = (x[rest], y[rest])
    included = (torch.cat([kept[0], canaries.x[canaries.included]]),
                torch.cat([kept[1], canaries.y[canaries.included]]))
    return CanaryStage(dataclasses.replace(bundle, train=included),
                       dataclasses.replace(bundle, train=kept),
                       CanaryProbe(canaries, config.evaluation.batch_size),
                       settings.confidence)


def finish(stage: CanaryStage, summary: dict[str, Any]) -> dict[str, Any]:
    """The audit's fields for ``summary`` (which holds the trial's ``epsilon`` and ``delta``)."""
    probe = stage.probe
    if probe is None or probe.scores is None:
        return {}
    result = audit_one_run.audit(probe.scores, probe.canaries.included.numpy(),
                                 delta=float(summary["delta"]), confidence=stage.confidence)
    claimed = summary.get("epsilon")
    return {"audit_epsilon_lower": result.epsilon_lower, "audit_canaries": result.canaries,
            "audit_guesses": result.guesses, "audit_correct": result.correct,
            "audit_included": int(probe.canaries.included.sum()),
            "audit_confidence": result.confidence,
            "audit_flagged": claimed is not None and result.epsilon_lower > float(claimed)}
