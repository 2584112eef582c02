"""ART's poison detectors as reference filters, on the same representations as ours.

ART's ``SpectralSignatureDefense`` and ``ActivationDefence`` read the activations of a
classifier's last layer; given a real model that is the logits, where their recall drops
(docs/facts.md). One adapter hands them precomputed penultimate features instead: a
``PyTorchClassifier`` around ``nn.Identity`` whose only (hence last) layer outputs the
features unchanged, so both detectors see exactly what our filters see.

ART's ``ActivationDefence`` clusters with numpy's global random state (no seed parameter);
the adapter seeds it for the call and restores it afterwards, so runs are reproducible and
the caller's global state is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

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


def feature_classifier(dims: int, num_classes: int):
    """An ART classifier whose last layer's activations are its (N, dims) inputs (ART
    rejects fewer than 2 classes; an unused extra class changes nothing)."""
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=nn.Sequential(nn.Identity()), loss=nn.CrossEntropyLoss(),
                             input_shape=(dims,), nb_classes=max(num_classes, 2),
                             clip_values=None, device_type="cpu")


@FILTERS.register("art_spectral")
@dataclass(frozen=True)
class ArtSpectral:
    """ART ``SpectralSignatureDefense``: ``expected_pp_poison = expected_rate`` and
    ``eps_multiplier = removal``, i.e. ART removes ``removal * expected_rate`` of every class.
    ART scores only what it flags; kept examples score 0. ART's quantile cut may overshoot
    the whole-set budget by a few examples; the lowest-scoring of those are kept."""

    removal: float = 1.5
    expected_rate: float | None = None
    needs: ClassVar[frozenset[str]] = frozenset({"features"})

    def __post_init__(self) -> None:
        check_removal(self.removal, self.expected_rate)

    def fit_predict(self, inputs: FilterInputs) -> FilterResult:
        from art.defences.detector.poison import SpectralSignatureDefense

        features = require(inputs, "features", "art_spectral").float().numpy()
        rate = resolve_rate(self.expected_rate, inputs, "art_spectral")
        defence = SpectralSignatureDefense(
            feature_classifier(features.shape[1], inputs.num_classes), features,
            inputs.labels.numpy(), expected_pp_poison=rate, eps_multiplier=self.removal,
            batch_size=len(features) or 1)
        report, is_clean = defence.detect_poison()
        scores = torch.zeros(len(features))
        if report:
            scores[torch.tensor(list(report))] = torch.tensor(list(report.values()), dtype=torch.float32)
        # ART's per-class quantile cut can overshoot the budget by a few; trim by its score
        flagged = ~torch.tensor(is_clean, dtype=torch.bool)
        budget = removal_budget(len(scores), self.removal, rate)
        keep = keep_all_but_top(torch.where(flagged, scores, torch.tensor(float("-inf"))),
                                min(budget, int(flagged.sum())))
        return FilterResult(scores, keep)


@FILTERS.register("art_activation")
@dataclass(frozen=True)
class ArtActivation:
    """ART ``ActivationDefence`` (2-means on ``dims`` dims, ART's ``"smaller"`` analysis:
    the smaller cluster of every class is flagged). The removal budget then keeps only the
    flagged examples of the relatively smallest clusters; ART itself has no budget."""

    removal: float = 1.5
    expected_rate: float | None = None
    dims: int = 10
    reduce: str = "PCA"
    seed: int = 0
    needs: ClassVar[frozenset[str]] = frozenset({"features"})

    def __post_init__(self) -> None:
        check_removal(self.removal, self.expected_rate)
        if self.reduce not in ("PCA", "FastICA"):
            raise ValueError(f"reduce must be one of PCA, FastICA, got {self.reduce!r}")

    def fit_predict(self, inputs: FilterInputs) -> FilterResult:
        from art.defences.detector.poison import ActivationDefence

        features = require(inputs, "features", "art_activation").float().numpy()
        rate = resolve_rate(self.expected_rate, inputs, "art_activation")
        # ART fails on an empty class: cluster the classes present, renumbered 0..K-1
        _, labels = torch.unique(inputs.labels, return_inverse=True)
        num_classes = int(labels.max()) + 1 if len(labels) else 0
        if num_classes < 2:
            raise ValueError("labels must contain at least 2 classes for art_activation")
        defence = ActivationDefence(feature_classifier(features.shape[1], num_classes),
                                    features, labels.numpy())
        state = np.random.get_state()
        np.random.seed(self.seed)
        try:
            _, is_clean = defence.detect_poison(nb_clusters=2, nb_dims=self.dims, reduce=self.reduce,
                                                cluster_analysis="smaller")
        finally:
            np.random.set_state(state)
        flagged = ~torch.tensor(is_clean, dtype=torch.bool)
        # score = 1 - relative size of the example's cluster within its class
        relative = torch.zeros(len(features))
        order = torch.argsort(labels, stable=True)  # ART's per-class order is index order
        clusters = torch.from_numpy(np.concatenate(defence.clusters_by_class)).long()
        counts = torch.bincount(labels, minlength=num_classes)
        class_of = labels[order]
        size = torch.zeros(num_classes, 2).index_put_((class_of, clusters), torch.ones(len(order)),
                                                            accumulate=True)
        relative[order] = size[class_of, clusters] / counts[class_of]
        scores = torch.where(flagged, 1.0 - relative, torch.zeros(()))
        budget = removal_budget(len(scores), self.removal, rate)
        keep = keep_all_but_top(torch.where(flagged, scores, torch.tensor(-1.0)),
                                min(budget, int(flagged.sum())))
        return FilterResult(scores, keep)
