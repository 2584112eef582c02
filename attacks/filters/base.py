"""Shared pieces of the poison filters: inputs, result, removal budget, per-class helpers.

A filter is a frozen dataclass built as ``cls(**params)``; it declares in ``needs`` which of
``features`` / ``losses`` it reads so the caller computes only those, and returns one
:class:`FilterResult` from ``fit_predict``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FilterInputs:
    """What a filter may read. ``features``: (N, D) float32 penultimate representations;
    ``losses``: (N, T) per-example losses over T epochs (or steps); ``expected_rate``: the
    expected poisoned fraction of the whole set (a filter's own ``expected_rate`` wins)."""

    labels: torch.Tensor
    num_classes: int
    features: torch.Tensor | None = None
    losses: torch.Tensor | None = None
    expected_rate: float | None = None


@dataclass(frozen=True)
class FilterResult:
    """``scores``: (N,) higher = more suspicious; ``keep``: (N,) bool, False = removed."""

    scores: torch.Tensor
    keep: torch.Tensor


def check_removal(removal: float, expected_rate: float | None) -> None:
    if isinstance(removal, bool) or not isinstance(removal, (int, float)) or not removal > 0:
        raise ValueError(f"removal must be a number > 0 (a multiple of the expected poison count), "
                         f"got {removal!r}")
    if expected_rate is not None and (isinstance(expected_rate, bool)
                                      or not isinstance(expected_rate, (int, float))
                                      or not 0 < expected_rate < 1):
        raise ValueError(f"expected_rate must be a number in (0, 1), got {expected_rate!r}")


def require(inputs: FilterInputs, name: str, filter_name: str) -> torch.Tensor:
    value = getattr(inputs, name)
    if value is None:
        raise ValueError(f"{name} must be given in FilterInputs for the {filter_name} filter")
    if len(value) != len(inputs.labels):
        raise ValueError(f"{name} must have one row per label ({len(inputs.labels)}), got {len(value)}")
    return value


def resolve_rate(own: float | None, inputs: FilterInputs, filter_name: str) -> float:
    rate = own if own is not None else inputs.expected_rate
    if rate is None:
        raise ValueError(f"expected_rate must be given (to the {filter_name} filter or in FilterInputs)")
    check_removal(1.0, rate)
    return float(rate)


def removal_budget(n: int, removal: float, expected_rate: float) -> int:
    """How many examples a filter may remove: ``removal`` times the expected poison count
    (Tran et al. remove 1.5 times it), never more than ``n``."""
    return min(n, round(removal * expected_rate * n))


def keep_all_but_top(scores: torch.Tensor, count: int) -> torch.Tensor:
    """``keep`` mask removing the ``count`` highest scores (stable order breaks ties)."""
    keep = torch.ones(len(scores), dtype=torch.bool)
    keep[torch.argsort(scores, descending=True, stable=True)[:count]] = False
    return keep


def class_groups(labels: torch.Tensor, num_classes: int) -> list[torch.Tensor]:
    """Positions of each class, found with one sort rather than one mask per class."""
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    return list(order.split(counts))


def robust_z(values: torch.Tensor, groups: list[torch.Tensor]) -> torch.Tensor:
    """Per-group (value - median) / (1.4826 MAD): comparable across classes and insensitive
    to the poisoned minority that would drag a mean and standard deviation."""
    z = torch.zeros_like(values)
    for idx in groups:
        if len(idx) == 0:
            continue
        v = values[idx]
        median = v.median()
        mad = (v - median).abs().median() * 1.4826
        z[idx] = (v - median) / mad.clamp_min(1e-12)
    return z


def class_suspicion(scores: torch.Tensor, groups: list[torch.Tensor], count: int) -> torch.Tensor:
    """Per class, the ``count``-th highest score (at most half-way down the class): how
    suspicious the class's would-be poisons are if all ``count`` expected poisons sat in it.
    A clean class offers only the tail of its bulk at that rank; a poisoned one offers its
    poisons. A class enlarged by poisons is read at a lower quantile, which adds to the signal
    (see :mod:`attacks.filters.spectral` for how much). Empty classes get -inf."""
    out = torch.full((len(groups),), float("-inf"))
    for c, idx in enumerate(groups):
        if len(idx) >= 2:
            rank = max(1, min(count, len(idx) // 2))
            out[c] = scores[idx].topk(rank).values[-1]
    return out


def flag_outliers(stat: torch.Tensor, cut: float = 3.5, share: float = 0.5) -> torch.Tensor:
    """The class with the highest statistic (the defender is told the poison rate, so some
    class holds poison) and every class that is as clearly an outlier: a modified z-score
    (Iglewicz & Hoaglin 1993) above ``cut`` and at least ``share`` of the highest one's, so a
    second target class is caught but a mildly unusual clean class does not split the budget."""
    finite = torch.isfinite(stat)
    flagged = torch.zeros(len(stat), dtype=torch.bool)
    if not bool(finite.any()):
        return flagged
    values = stat[finite]
    median = values.median()
    z = (values - median) / ((values - median).abs().median() * 1.4826).clamp_min(1e-12)
    flagged[finite] = (z > cut) & (z >= share * z.max())
    flagged[int(torch.where(finite, stat, float("-inf")).argmax())] = True
    return flagged


def keep_top_in_classes(scores: torch.Tensor, groups: list[torch.Tensor], classes: torch.Tensor,
                        budget: int) -> torch.Tensor:
    """``keep`` mask removing, within the ``classes`` flagged, the ``budget`` highest scores
    overall, but never more than half of any class (poisons are a class's minority)."""
    candidates = torch.full((len(scores),), float("-inf"))
    for c in classes.nonzero().flatten().tolist():
        idx = groups[c]
        top = idx[scores[idx].topk(len(idx) // 2).indices]
        candidates[top] = scores[top]
    return keep_all_but_top(candidates, min(budget, int(torch.isfinite(candidates).sum())))
