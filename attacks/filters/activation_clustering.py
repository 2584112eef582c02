"""Activation clustering: per class, poisons form their own small cluster.

Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks by Activation Clustering",
SafeAI@AAAI 2019, https://arxiv.org/abs/1811.03728: per class, reduce the penultimate
activations to 10 dimensions (ICA in the paper; PCA, the default here, is deterministic and
about 50x faster on CPU; ``reduce="ica"`` follows the paper), split them with 2-means, and
decide which classes are poisoned before removing anything.

How a class is judged (``allocation``):
- ``"flagged"`` (default): each example scores its margin toward the class's small cluster,
  as a robust z-score within the class; the class's statistic is its m-th highest score for
  m the expected poison count (:func:`~attacks.filters.base.class_suspicion`), the highest
  class is flagged with any other as clearly outlying, and the budget removes the top
  scores of the flagged classes (the small cluster first, then the examples nearest to it),
  never more than half of a class. It assumes all-to-one poison, as every attack in
  :mod:`attacks.poisoning` does.
- ``"relative_size"`` (the former default): Chen et al.'s criterion, a small cluster holding
  at most ``max_relative_size`` of its class (0.35 as in ART) flags the class; silhouette
  orders flagged classes and only small-cluster members may go. On digits, clean classes
  (1, 4, 9) split into small, well-separated clusters too, and win.

Measured whole-set recall / precision, digits BadNets 3x3 5% target 0, seeds 0 / 1 / 2:
- grid's model (robustlr ``cnn``, BatchNorm; 1,168 examples, 8 epochs): flagged 1.00 on all
  three, precision 0.67 (the most possible at 1.5 x m); relative_size 0.83 / 0.93 / 0.98.
  Retrained on what was kept, ASR 0.00 on all three (1.00 unfiltered).
- the tests' no-BatchNorm CNN (1,400 examples, 8 epochs): flagged 1.00 / 1.00 / 0.79
  (0.54-0.69); relative_size 0.80 / 0.27 / 0.21.
The class statistic partly reflects the target's size (see :mod:`attacks.filters.spectral`):
on the no-BatchNorm CNN a clean class copied up to the target's size scores as high.

Unlike ART (docs/facts.md: recall 0.99 in one run, 0.54 in another) every random step is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from sklearn.decomposition import FastICA

from ..contracts import FILTERS
from .base import (
    FilterInputs,
    FilterResult,
    check_removal,
    class_groups,
    class_suspicion,
    flag_outliers,
    keep_all_but_top,
    keep_top_in_classes,
    removal_budget,
    require,
    resolve_rate,
    robust_z,
)

REDUCTIONS = ("ica", "pca")
ALLOCATIONS = ("flagged", "relative_size")


def pca(features: torch.Tensor, dims: int) -> torch.Tensor:
    """Projection on the top ``dims`` principal axes (eigh of the D x D scatter matrix).

    The D x D matrix is decomposed in float64: with many dead ReLU units it is singular, and
    float32 eigh returned NaN vectors for such a class (seen on digits)."""
    centred = features - features.mean(dim=0)
    scatter = centred.double().T @ centred.double()
    _, vectors = torch.linalg.eigh(scatter)
    return centred @ vectors[:, -dims:].to(centred.dtype)


def two_means(points: torch.Tensor, generator: torch.Generator, inits: int = 2,
              iters: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's 2-means from ``inits`` seeded k-means++ starts run as one batch; returns the
    (n,) assignment and (n, 2) squared distances of the lowest-inertia run. sklearn's KMeans
    (n_init=10) cost 20x more here, mostly per-call overhead on small classes."""
    n = len(points)
    norms = points.pow(2).sum(dim=1)

    def sq_distances(centres):  # (inits, n, 2) via one matmul, no (n, 2, d) difference
        return (norms[None, :, None] - 2 * points @ centres.transpose(1, 2)
                + centres.pow(2).sum(dim=2)[:, None, :]).clamp_min(0.0)

    first = points[torch.randint(n, (inits,), generator=generator)]
    d0 = sq_distances(first[:, None].expand(-1, 2, -1))[..., 0]
    second = points[torch.multinomial(d0 + 1e-12, 1, generator=generator).squeeze(1)]
    centres = torch.stack([first, second], dim=1)                           # (inits, 2, d)
    assign = None
    for _ in range(iters):
        updated = sq_distances(centres).argmin(dim=2)
        if assign is not None and torch.equal(updated, assign):
            break  # assignments fixed: Lloyd has converged
        assign = updated
        onehot = torch.nn.functional.one_hot(assign, 2).float()            # (inits, n, 2)
        counts = onehot.sum(dim=1).clamp_min(1.0)[..., None]
        centres = onehot.transpose(1, 2) @ points / counts
    distances = sq_distances(centres)
    best = int(distances.min(dim=2).values.sum(dim=1).argmin())
    return distances[best].argmin(dim=1), distances[best]


def silhouette(points: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
               sample: int = 1000) -> float:
    """Mean silhouette (Rousseeuw 1987) of a 2-cluster split on at most ``sample`` points."""
    if len(points) > sample:
        keep = torch.randperm(len(points), generator=generator)[:sample]
        points, labels = points[keep], labels[keep]
    onehot = torch.nn.functional.one_hot(labels, 2).float()
    sums = torch.cdist(points, points) @ onehot                             # (m, 2)
    sizes = onehot.sum(dim=0)
    own = labels[:, None]
    a = sums.gather(1, own).squeeze(1) / (sizes[labels] - 1).clamp_min(1.0)
    b = sums.gather(1, 1 - own).squeeze(1) / sizes[1 - labels].clamp_min(1.0)
    scores = torch.where(sizes[labels] > 1, (b - a) / torch.maximum(a, b).clamp_min(1e-12), 0.0)
    return float(scores.mean())


def cluster_class(features: torch.Tensor, dims: int, reduce: str, seed: int,
                  separation: bool = True):
    """(margin toward the small cluster in [-1, 1], in-small-cluster mask, relative size,
    silhouette) for one class; the silhouette (an m x m distance matrix) only when asked."""
    dims = min(dims, features.shape[0] - 1, features.shape[1])
    if reduce == "ica":
        reducer = FastICA(dims, random_state=seed, max_iter=1000, tol=0.005)
        reduced = torch.from_numpy(reducer.fit_transform(features.numpy())).float()
    else:
        reduced = pca(features, dims)
    generator = torch.Generator().manual_seed(seed)
    labels, distances = two_means(reduced, generator)
    distances = distances.sqrt()
    small = int(torch.bincount(labels, minlength=2).argmin())
    near_small, near_large = distances[:, small], distances[:, 1 - small]
    margin = (near_large - near_small) / (near_large + near_small).clamp_min(1e-12)
    in_small = labels == small
    split = 0 < int(in_small.sum()) < len(labels)
    score = silhouette(reduced, labels, generator) if separation and split else 0.0
    return margin, in_small, float(in_small.float().mean()), score


@FILTERS.register("activation_clustering")
@dataclass(frozen=True)
class ActivationClustering:
    """Activation-clustering filter on penultimate features (``needs = {"features"}``)."""

    removal: float = 1.5
    expected_rate: float | None = None
    dims: int = 10
    reduce: str = "pca"
    max_relative_size: float = 0.35
    allocation: str = "flagged"
    seed: int = 0
    needs: ClassVar[frozenset[str]] = frozenset({"features"})

    def __post_init__(self) -> None:
        check_removal(self.removal, self.expected_rate)
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {', '.join(REDUCTIONS)}, got {self.reduce!r}")
        if isinstance(self.dims, bool) or not isinstance(self.dims, int) or self.dims < 1:
            raise ValueError(f"dims must be an integer >= 1, got {self.dims!r}")
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {self.allocation!r}")
        if not 0 < self.max_relative_size < 0.5:
            raise ValueError(f"max_relative_size must be in (0, 0.5), got {self.max_relative_size!r}")

    def fit_predict(self, inputs: FilterInputs) -> FilterResult:
        features = require(inputs, "features", "activation_clustering").float()
        rate = resolve_rate(self.expected_rate, inputs, "activation_clustering")
        groups = class_groups(inputs.labels, inputs.num_classes)
        margins = torch.zeros(len(features))
        sizes = torch.ones(len(groups))
        separations = torch.zeros(len(groups))
        in_small = torch.zeros(len(features), dtype=torch.bool)
        for c, idx in enumerate(groups):
            if len(idx) > 2:
                margins[idx], in_small[idx], sizes[c], separations[c] = cluster_class(
                    features[idx], self.dims, self.reduce, self.seed,
                    separation=self.allocation == "relative_size")  # "flagged" ranks by margin
        budget = removal_budget(len(features), self.removal, rate)
        if self.allocation == "flagged":
            scores = robust_z(margins, groups)  # classes on one scale; small cluster first
            flagged = flag_outliers(class_suspicion(scores, groups, round(rate * len(scores))))
            return FilterResult(scores, keep_top_in_classes(scores, groups, flagged, budget))
        # Chen et al.'s criterion: a small cluster flags its class; flagged classes rank above
        # all others (offset 3), the better separated first; only small clusters may go
        poisoned = sizes <= self.max_relative_size
        scores = torch.full((len(features),), -1.0)
        flagged = torch.zeros(len(features), dtype=torch.bool)
        for c, idx in enumerate(groups):
            if len(idx) > 2:
                scores[idx] = margins[idx] + (3.0 + separations[c]) * poisoned[c]
                flagged[idx] = in_small[idx] & poisoned[c]
        ranked = torch.where(flagged, scores, torch.tensor(float("-inf")))
        return FilterResult(scores, keep_all_but_top(ranked, min(budget, int(flagged.sum()))))
