"""Filter quality against the known poisoned positions."""

from __future__ import annotations

import torch


def filter_metrics(keep: torch.Tensor, poisoned_indices: torch.Tensor) -> dict[str, float]:
    """Precision and recall of the removed set, their F1, and the fraction of clean examples
    removed. With nothing removed precision is 0; with no poison recall is 1 (nothing missed)."""
    removed = ~keep.bool()
    poisoned = torch.zeros_like(removed)
    poisoned[poisoned_indices] = True
    caught = int((removed & poisoned).sum())
    n_removed, n_poisoned = int(removed.sum()), int(poisoned.sum())
    n_clean = len(keep) - n_poisoned
    precision = caught / n_removed if n_removed else 0.0
    recall = caught / n_poisoned if n_poisoned else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    clean_removed = (n_removed - caught) / n_clean if n_clean else 0.0
    return {"filter_precision": precision, "filter_recall": recall, "filter_f1": f1,
            "clean_removed": clean_removed}
