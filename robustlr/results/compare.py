"""What ``robustlr compare`` and ``robustlr gate`` compute, apart from their command lines:
two runs' groups side by side with the seed noise as the yardstick, and one bound checked on
one group's seed mean. Groups are defined once in :mod:`robustlr.results.groups`."""

from __future__ import annotations

import math
from typing import Any

from robustlr.errors import InputError
from robustlr.records import SCOPE_NAMES, SUMMARY_METRICS, scope, unit
from robustlr.results import bounds as bounds_rule
from robustlr.results.groups import GROUP_KEYS, label
from robustlr.results.stats import example_count, finite, group, interval, paired_over_examples
from robustlr.spec import SpecError, is_none, parse

COMPARED = ("clean_acc", "clean_acc_best", "robust_acc", "monitor_robust_acc", "epsilon", "asr",
            "mia_auc", "train_seconds")
ALPHA = 0.05
NOT_METRICS = {"seed", "lr_scale", "worst_class", "robust_worst_class"}  # not quantities


def numeric_fields(records: list[dict[str, Any]]) -> set[str]:
    """The fields a bound may name: every documented metric and any numeric field present."""
    found = {k for r in records for k, v in r.items() if finite(v) is not None}
    return (set(SUMMARY_METRICS) | found) - NOT_METRICS


def in_scope(kind: str | None, record: dict[str, Any]) -> bool:
    """Whether a trial is of the kind a scoped metric is defined for (None: every trial)."""
    if kind == "poisoning":
        return not is_none(record.get("poison"))
    if kind == "filtered":
        return not is_none(record.get("filter"))
    if kind == "private":
        if "dp_guarantee" in record:  # every DP trial's ledger says whether it holds one
            return True
        try:
            return parse(str(record.get("regime"))).name == "dp"
        except SpecError:
            return False
    return True


def applicable(bound: bounds_rule.Bound, groups: dict[tuple, list[dict]]) -> dict[tuple, list[dict]]:
    """The groups ``bound`` applies to: those of the threat model its metric is defined for
    (asr: poisoning trials, epsilon: DP trials, ...). A bound that applies to no group, or on a
    metric no trial records, is an input error: it could only certify nothing."""
    kind = scope(bound.metric)
    option = f"--{bound.kind} {bound.metric}"
    chosen = {key: runs for key, runs in groups.items() if any(in_scope(kind, r) for r in runs)}
    if kind is not None and not chosen:
        raise InputError(f"{option}: {bound.metric} is defined for {SCOPE_NAMES[kind]} and none "
                         "of the gated trials is one")
    if kind is None and not any(bound.metric in r for runs in groups.values() for r in runs):
        raise InputError(f"{option}: no gated trial records {bound.metric} (is the evaluation "
                         "that measures it configured?)")
    return chosen


def check(bound: bounds_rule.Bound, key: tuple, records: list[dict]) -> dict[str, Any]:
    """``bound`` on the seed mean of one group; one seed without the value (or with inf/nan)
    makes the mean unknown, and the bound fails as missing."""
    values = [finite(r.get(bound.metric)) for r in records]
    value = math.nan if None in values else interval(values).mean
    finite_mean = math.isfinite(value)
    return {"bound": bound.text, "metric": bound.metric, "side": bound.kind,
            "limit": bound.limit, "group": dict(zip(GROUP_KEYS, key)), "label": label(key),
            "seeds": len(records), "value": value if finite_mean else None,
            "status": "pass" if bound.holds(value) else ("fail" if finite_mean else "missing")}


def difference(a: dict[Any, float], b: dict[Any, float], examples: int | None = None) -> dict[str, Any]:
    """B - A for one metric (seed -> value on each side). With two seeds or more on both sides
    it is paired by seed and judged over seeds and test examples together
    (:func:`robustlr.results.stats.paired_over_examples`: flagged when p < 0.05, never within
    one test example); otherwise B mean - A mean against twice the pooled standard error."""
    mean_a, mean_b = sum(a.values()) / len(a), sum(b.values()) / len(b)
    shared = [seed for seed in a if seed in b]
    if len(shared) >= 2:
        judged = paired_over_examples({s: b[s] for s in shared}, {s: a[s] for s in shared}, examples)
        flagged = math.isfinite(judged.p) and judged.p < ALPHA
        return {"a": mean_a, "b": mean_b, "change": judged.mean, "se": None,
                "half": judged.half, "p": judged.p, "paired_seeds": len(shared),
                "examples": judged.examples, "method": judged.method, "flagged": flagged,
                "note": "beyond noise" if flagged else ""}
    change = mean_b - mean_a
    base = {"a": mean_a, "b": mean_b, "change": change, "half": None, "p": None,
            "paired_seeds": len(shared), "examples": examples,
            "method": "unpaired: |change| > 2 x pooled SE"}
    freedom = len(a) + len(b) - 2
    if freedom < 1:
        return {**base, "se": None, "flagged": False, "note": "1 seed: no noise estimate"}
    squares = sum((v - mean_a) ** 2 for v in a.values()) + sum((v - mean_b) ** 2 for v in b.values())
    se = math.sqrt(squares / freedom * (1 / len(a) + 1 / len(b)))
    within_one = examples is not None and abs(change) * examples <= 1 + 1e-9
    flagged = abs(change) > 2 * se and not within_one
    return {**base, "se": se, "flagged": flagged, "note": "beyond noise" if flagged else ""}


def _values(records: list[dict], metric: str) -> dict[Any, float]:
    """seed -> finite value (a seed recorded twice keeps its first value)."""
    found: dict[Any, float] = {}
    for record in records:
        value = finite(record.get(metric))
        if value is not None:
            found.setdefault(record.get("seed"), value)
    return found


def compare_groups(records_a: list[dict], records_b: list[dict]) -> list[dict[str, Any]]:
    """Per group present in both runs, each compared metric's seed means and their change."""
    groups_a, groups_b = group(records_a, GROUP_KEYS), group(records_b, GROUP_KEYS)
    compared = []
    for key in [k for k in groups_a if k in groups_b]:
        metrics = []
        for metric in COMPARED:
            a, b = _values(groups_a[key], metric), _values(groups_b[key], metric)
            if a and b:
                examples = example_count(groups_a[key] + groups_b[key], metric)
                metrics.append({"metric": metric, "unit": unit(metric), "seeds_a": len(a),
                                "seeds_b": len(b), **difference(a, b, examples)})
        compared.append({"group": dict(zip(GROUP_KEYS, key)), "label": label(key),
                         "metrics": metrics})
    return compared


IDENTITY = {"model": "model", "data_hash": "data"}
"""Summary fields that say what was trained on what: groups that differ in them are not one
experiment measured twice."""


def identities(records: list[dict]) -> dict[str, list[str]]:
    """The identity fields on which ``records`` disagree, with their values (records from
    before a field existed say nothing about it)."""
    mixed = {}
    for field in IDENTITY:
        values = sorted({str(r.get(field)) for r in records if r.get(field) not in (None, "")})
        if len(values) > 1:
            mixed[field] = values
    return mixed


def mismatches(groups: dict[str, list[dict]]) -> list[str]:
    """One line per group (label -> its records, from both runs) whose trials differ in model
    or data: ``cosine / standard: model cnn vs mlp``."""
    lines = []
    for name, records in groups.items():
        mixed = identities(records)
        if mixed:
            lines.append(f"{name}: " + "; ".join(f"{IDENTITY[field]} {' vs '.join(values)}"
                                                   for field, values in mixed.items()))
    return lines


def unpaired(records_a: list[dict], records_b: list[dict]) -> tuple[list[str], list[str]]:
    """Labels of the groups only in A, and only in B."""
    keys_a, keys_b = group(records_a, GROUP_KEYS), group(records_b, GROUP_KEYS)
    return ([label(k) for k in keys_a if k not in keys_b],
            [label(k) for k in keys_b if k not in keys_a])
