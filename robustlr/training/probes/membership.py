"""Empirical privacy beside the accountant's epsilon: a membership-inference audit of the final
model (training examples as members, the held-out test split as non-members), for private and
non-private trials alike, so the report shows what DP bought."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustlr.privacy.audit import audit
from robustlr.training.probes.base import Probe


class MembershipProbe(Probe):
    def __init__(self, *, train, test, delta: float, seed: int, batch_size: int):
        # as many members as non-members, so the attack's base rate is one half
        count = min(len(train[1]), len(test[1]))
        order = torch.randperm(len(train[1]), generator=torch.Generator().manual_seed(seed))[:count]
        self.members = (train[0][order], train[1][order])
        self.non_members = (test[0][:count], test[1][:count])
        self.delta, self.seed, self.batch_size = delta, seed, batch_size

    def final(self, model: nn.Module, trial_dir: Path | None) -> dict[str, Any]:
        result = audit(model, self.members, self.non_members, delta=self.delta, seed=self.seed,
                       batch_size=self.batch_size)
        return {"mia_auc": result.auc, "mia_tpr_at_1pct_fpr": result.tpr_at_1pct_fpr,
                "mia_tpr_at_0_1pct_fpr": result.tpr_at_0_1pct_fpr,
                "epsilon_lower_bound": result.epsilon_lower_bound, "mia_art_auc": result.art_auc,
                "mia_members": result.n_members}
