"""Seed statistics: means with 95% t-intervals, grouped by what defines a schedule's result;
paired-by-seed differences judged over seeds and test examples together
(:func:`paired_over_examples`), with Holm's correction for the many comparisons of a ranking."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from scipy import stats as scipy_stats

from robustlr.records import finite as records_finite


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
    """:func:`robustlr.records.finite` of ``value`` converted by ``float`` first: numpy and
    tensor scalars, and numbers written as text (a CSV cell, a command-line value)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return records_finite(value)


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
        averaging = record.get("averaging") or "none"  # an averaged arm is not another seed
        scenario += "" if averaging == "none" else f" / {averaging}"
        labelled.append({**record, "regime": f"{record.get('regime')}{scenario}"})
    return labelled


@dataclass(frozen=True)
class Paired:
    """``a - b`` paired by seed: mean difference, 95% t half-width, two-sided p-value; with
    ``examples`` (the test examples a share was measured on), :func:`paired_over_examples`'s."""

    n: int
    mean: float
    half: float
    p: float
    examples: int | None = None
    method: str = "paired t-test over seeds"


def paired(a: dict[Any, Any], b: dict[Any, Any], confidence: float = 0.95) -> Paired:
    """Paired t-test of ``a`` against ``b`` (seed -> value) over the seeds both measured.
    Fewer than two pairs leave the noise unknown (``p`` is NaN)."""
    diffs = [fa - fb for seed in a if seed in b
             for fa, fb in [(finite(a[seed]), finite(b[seed]))] if fa is not None and fb is not None]
    n = len(diffs)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan)
    mean = sum(diffs) / n
    if n == 1:
        return Paired(1, mean, math.nan, math.nan)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    t_crit = scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)
    if sd <= 1e-12 * max(1.0, abs(mean)):  # the same difference on every seed: untestable
        return Paired(n, mean, 0.0, math.nan)
    t = mean / (sd / math.sqrt(n))
    return Paired(n, mean, float(t_crit * sd / math.sqrt(n)),
                  float(2 * scipy_stats.t.sf(abs(t), n - 1)))


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone); NaN stays NaN and does not
    count as a hypothesis."""
    order = sorted((p, i) for i, p in enumerate(p_values) if math.isfinite(p))
    adjusted = [math.nan] * len(p_values)
    running, m = 0.0, len(order)
    for rank, (p, index) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


EXAMPLE_COUNTS = {
    "clean_acc": "test_examples", "clean_acc_best": "test_examples",
    "robust_acc": "robust_examples", "robust_acc_best": "robust_examples",
    "monitor_robust_acc": "monitor_examples", "monitor_robust_acc_best": "monitor_examples",
    "val_acc": "val_examples", "monitor_val_robust_acc": None,
    "asr": "asr_examples", "asr_best": "asr_examples", "ra": "asr_examples"}
"""The summary field counting the test examples each share was measured on: one example's
worth of ``clean_acc`` is ``1 / test_examples``."""

EXAMPLE_TEST = ("paired t-test over seeds and exact sign test over the fewest test examples "
                "that make the gaps")


def example_count(records: Iterable[dict[str, Any]], metric: str) -> int | None:
    """The number of test examples ``metric`` was measured on in every one of ``records``
    (the smallest, should they differ); None when unknown for any (older summaries, metrics
    that are not shares of examples)."""
    field = EXAMPLE_COUNTS.get(metric)
    counts = [finite(r.get(field)) for r in records] if field else [None]
    if not counts or any(c is None or c < 1 for c in counts):
        return None
    return int(min(c for c in counts if c is not None))


def sign_test(gaps: list[int]) -> float:
    """Two-sided exact sign test of per-seed gaps in examples, at the fewest discordant test
    examples that make them (a gap of d needs d examples that one model gets right and the
    other wrong, all one way). More discordant examples only weaken the evidence, so this is
    the smallest p-value the examples could give: a gap that fails it cannot be told from which
    examples happened to fall each way (McNemar's exact test at its floor)."""
    ahead = sum(g for g in gaps if g > 0)
    behind = sum(-g for g in gaps if g < 0)
    total = ahead + behind
    if total == 0:
        return 1.0
    return float(min(1.0, 2 * scipy_stats.binom.cdf(min(ahead, behind), total, 0.5)))


def paired_over_examples(a: dict[Any, Any], b: dict[Any, Any], examples: int | None,
                         confidence: float = 0.95) -> Paired:
    """``a - b`` (seed -> share of ``examples`` test examples) judged over seeds and test
    examples together. The per-seed gaps are counted in whole examples (so float rounding in
    the shares cannot pass for a seed-to-seed spread); the p-value is the larger of a paired
    t-test over seeds and :func:`sign_test` over the examples behind the gaps (an
    intersection-union test: a difference counts only when both reject), and a mean gap of at
    most one example is never a difference (p = 1). Identical gaps on every seed leave the
    seeds no noise to estimate, and the examples decide. Without ``examples``: the t-test."""
    if examples is None:
        return paired(a, b, confidence)
    gaps = {seed: round((fa - fb) * examples) for seed in a if seed in b
            for fa, fb in [(finite(a[seed]), finite(b[seed]))] if fa is not None and fb is not None}
    seeds = paired(gaps, dict.fromkeys(gaps, 0), confidence)
    if seeds.n < 2:
        return paired(a, b, confidence)
    counts = list(gaps.values())
    by_seeds = seeds.p if math.isfinite(seeds.p) else (0.0 if any(counts) else 1.0)
    p = max(by_seeds, sign_test(counts))
    if abs(sum(counts)) <= len(counts):  # a mean gap within one example's worth
        p = 1.0
    return Paired(seeds.n, seeds.mean / examples, seeds.half / examples, p, examples, EXAMPLE_TEST)
