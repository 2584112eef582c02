"""The worst class: per-class accuracies reduced to the slice a deployment fails on first.
Adversarial training widens the gap between classes (Xu et al. 2021, "To be robust or to be
fair"), which an average hides."""

from __future__ import annotations

import math
from typing import Any

SOURCES = {"": "per_class_acc", "robust_": "robust_per_class_acc"}
"""Field prefix -> the per-class list it is computed from."""


def worst_class(per_class: Any) -> dict[str, Any] | None:
    """``{"class", "acc", "gap"}`` of the least accurate class present (NaN marks a class
    absent from the split), ``gap`` being the mean over present classes minus it; None when
    no class has a number."""
    if not isinstance(per_class, (list, tuple)):
        return None
    present = [(float(v), k) for k, v in enumerate(per_class)
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if not present:
        return None
    acc, index = min(present)
    mean = math.fsum(v for v, _ in present) / len(present)
    return {"class": index, "acc": acc, "gap": mean - acc}


def slice_fields(summary: dict[str, Any]) -> dict[str, Any]:
    """``worst_class``, ``worst_class_acc``, ``worst_class_gap`` and their ``robust_`` twins,
    for whichever per-class lists the summary holds."""
    fields: dict[str, Any] = {}
    for prefix, source in SOURCES.items():
        worst = worst_class(summary.get(source))
        if worst is not None:
            fields.update({f"{prefix}worst_class": worst["class"],
                           f"{prefix}worst_class_acc": worst["acc"],
                           f"{prefix}worst_class_gap": worst["gap"]})
    return fields
