"""Seed statistics: means with 95% t-intervals, grouped by what defines a schedule's result."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from scipy import stats as scipy_stats


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def text(self, scale: float = 1.0, digits: int = 1) -> str:
        if self.n == 0 or not math.isfinite(self.mean):
            return "-"
        if self.n == 1:
            return f"{self.mean * scale:.{digits}f}"
        half = (self.high - self.mean) * scale
        return f"{self.mean * scale:.{digits}f} ± {half:.{digits}f}"


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def interval(values: Iterable[Any], confidence: float = 0.95) -> Interval:
    """Mean and two-sided t-interval; a single value has a zero-width interval."""
    clean = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(clean)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = sum(clean) / n
    if n == 1:
        return Interval(mean, mean, mean, 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in clean) / (n - 1))
    half = scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def group(summaries: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    """Summaries grouped by ``keys``, in the order groups first appear."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in summaries:
        groups[tuple(record.get(k) for k in keys)].append(record)
    return dict(groups)


def with_arms(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies whose ``regime`` also names the poisoning scenario, so that sections grouping by
    regime never pool a poisoned or filtered arm with clean training."""
    labelled = []
    for record in summaries:
        poison, defence = record.get("poison", "none"), record.get("filter", "none")
        scenario = "" if poison == defence == "none" else f" / {poison} / {defence}"
        labelled.append({**record, "regime": f"{record.get('regime')}{scenario}"})
    return labelled
