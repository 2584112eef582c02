"""k-nearest-neighbour label consistency: a flipped label disagrees with its neighbours.

Peri et al., "Deep k-NN Defense Against Clean-Label Data Poisoning Attacks", ECCV 2020
Workshops, https://arxiv.org/abs/1909.13374, on penultimate features; here the score is the
fraction of the k nearest neighbours (cosine, excluding the example itself) whose label
differs, and the removal budget takes the most inconsistent examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..contracts import FILTERS
from .base import (
    FilterInputs,
    FilterResult,
    check_removal,
    keep_all_but_top,
    removal_budget,
    require,
    resolve_rate,
)


def neighbour_disagreement(features: torch.Tensor, labels: torch.Tensor, k: int,
                           chunk: int = 1024) -> torch.Tensor:
    """Fraction of each row's k nearest (cosine) neighbours with another label. Similarities
    are formed ``chunk`` rows at a time, so memory is chunk x N, never N x N."""
    unit = torch.nn.functional.normalize(features, dim=1)
    k = min(k, len(unit) - 1)
    out = torch.empty(len(unit))
    for start in range(0, len(unit), chunk):
        block = unit[start:start + chunk] @ unit.T
        rows = torch.arange(len(block))
        block[rows, rows + start] = -2.0  # below any cosine: never one's own neighbour
        neighbours = block.topk(k, dim=1).indices
        out[start:start + chunk] = (labels[neighbours] != labels[start:start + chunk, None]).float().mean(1)
    return out


@FILTERS.register("knn")
@dataclass(frozen=True)
class KNN:
    """kNN label-consistency filter on penultimate features (``needs = {"features"}``)."""

    removal: float = 1.5
    expected_rate: float | None = None
    k: int = 10
    needs: ClassVar[frozenset[str]] = frozenset({"features"})

    def __post_init__(self) -> None:
        check_removal(self.removal, self.expected_rate)
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k!r}")

    def fit_predict(self, inputs: FilterInputs) -> FilterResult:
        features = require(inputs, "features", "knn").float()
        rate = resolve_rate(self.expected_rate, inputs, "knn")
        if len(features) < 2:
            return FilterResult(torch.zeros(len(features)), torch.ones(len(features), dtype=torch.bool))
        scores = neighbour_disagreement(features, inputs.labels, self.k)
        keep = keep_all_but_top(scores, removal_budget(len(scores), self.removal, rate))
        return FilterResult(scores, keep)
