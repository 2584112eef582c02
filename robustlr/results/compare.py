"""What ``robustlr compare`` and ``robustlr gate`` compute, apart from their command lines:
two runs' groups side by side with the seed noise as the yardstick, and one bound checked on
one group's seed mean. Groups are defined once in :mod:`robustlr.results.groups`."""

from __future__ import annotations

import math
from typing import Any

from robustlr.records import SUMMARY_METRICS
from robustlr.results import bounds as bounds_rule
from robustlr.results.groups import GROUP_KEYS, label
from robustlr.results.stats import finite, group, interval

COMPARED = ("clean_acc", "clean_acc_best", "robust_acc", "monitor_robust_acc", "epsilon", "asr",
            "mia_auc", "train_seconds")
NOT_METRICS = {"seed", "lr_scale", "worst_class", "robust_worst_class"}  # not quantities


def numeric_fields(records: list[dict[str, Any]]) -> set[str]:
    """The fields a bound may name: every documented metric and any numeric field present."""
    found = {k for r in records for k, v in r.items() if finite(v) is not None}
    return (set(SUMMARY_METRICS) | found) - NOT_METRICS


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


def difference(a: list[float], b: list[float]) -> dict[str, Any]:
    """B mean - A mean and the pooled standard error of that difference across seeds."""
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    change = mean_b - mean_a
    freedom = len(a) + len(b) - 2
    if freedom < 1:
        return {"a": mean_a, "b": mean_b, "change": change, "se": None, "flagged": False,
                "note": "1 seed: no noise estimate"}
    squares = sum((v - mean_a) ** 2 for v in a) + sum((v - mean_b) ** 2 for v in b)
    se = math.sqrt(squares / freedom * (1 / len(a) + 1 / len(b)))
    flagged = abs(change) > 2 * se
    return {"a": mean_a, "b": mean_b, "change": change, "se": se, "flagged": flagged,
            "note": "beyond seed noise" if flagged else ""}


def compare_groups(records_a: list[dict], records_b: list[dict]) -> list[dict[str, Any]]:
    """Per group present in both runs, each compared metric's seed means and their change."""
    groups_a, groups_b = group(records_a, GROUP_KEYS), group(records_b, GROUP_KEYS)
    compared = []
    for key in [k for k in groups_a if k in groups_b]:
        metrics = []
        for metric in COMPARED:
            a = [v for v in (finite(r.get(metric)) for r in groups_a[key]) if v is not None]
            b = [v for v in (finite(r.get(metric)) for r in groups_b[key]) if v is not None]
            if a and b:
                metrics.append({"metric": metric, "seeds_a": len(a), "seeds_b": len(b),
                                **difference(a, b)})
        compared.append({"group": dict(zip(GROUP_KEYS, key)), "label": label(key),
                         "metrics": metrics})
    return compared


def unpaired(records_a: list[dict], records_b: list[dict]) -> tuple[list[str], list[str]]:
    """Labels of the groups only in A, and only in B."""
    keys_a, keys_b = group(records_a, GROUP_KEYS), group(records_b, GROUP_KEYS)
    return ([label(k) for k in keys_a if k not in keys_b],
            [label(k) for k in keys_b if k not in keys_a])
