"""The line under the report's title that says what was audited: the model, the data, the size
of the test set every accuracy is measured on and the headline robust evaluation, so a reader
never has to open the config to know what the numbers are about."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

from robustlr.results.stats import finite

_LARGEST_TEST_SET = 10**7


def data_name(run_dir: Path) -> str | None:
    """The data set a run folder's saved config names (its name, else its path); None when
    the folder holds no readable config (a report rebuilt elsewhere still renders)."""
    from robustlr.safe_yaml import YamlInputError, load_file

    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    try:
        raw = load_file(path)
    except YamlInputError:
        return None
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict):
        return None
    name = data.get("name") or data.get("path")
    return str(name) if name else None


def test_size(summaries: list[dict[str, Any]]) -> int | None:
    """How many test examples the clean accuracies were counted on: each accuracy is k / N,
    so N is the least common denominator of them all (exact unless every trial's count shares
    a factor with N, which a handful of trials already makes unlikely)."""
    size = 1
    for record in summaries:
        accuracy = finite(record.get("clean_acc"))
        if accuracy is None or not 0 <= accuracy <= 1:
            continue
        size = math.lcm(size, Fraction(accuracy).limit_denominator(_LARGEST_TEST_SET).denominator)
        if size > _LARGEST_TEST_SET:
            return None
    return size if size > 1 else None


def _listed(values: list[Any]) -> str:
    return ", ".join(dict.fromkeys(str(v) for v in values if v not in (None, "")))


def setup_text(summaries: list[dict[str, Any]], data: str | None = None) -> str:
    """One sentence: model, data, test examples, classes and the headline evaluation."""
    usable = [r for r in summaries if r.get("status") not in ("failed", "diverged")] or summaries
    model = _listed([r.get("model_spec") or r.get("model") for r in usable]) or "not recorded"
    data = data or _listed([r.get("data") for r in usable]) or "not recorded"
    size = test_size(usable)
    classes = {len(r["per_class_acc"]) for r in usable if isinstance(r.get("per_class_acc"), list)}
    parts = [f"Model {model}", f"data {data}"]
    if size:
        parts.append(f"{size} test examples" + (f" in {classes.pop()} classes"
                                                 if len(classes) == 1 else ""))
    headline = _listed([f"{r['robust_eval']} on {r.get('robust_examples', '?')} test examples"
                        for r in usable if r.get("robust_eval")])
    text = "; ".join(parts)
    if headline:
        text += f"; robust accuracy: {headline}"
    return text + "."
