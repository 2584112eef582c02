"""Clean evaluation: loss, accuracy and per-class accuracy of a model on a split."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Evaluation:
    loss: float
    acc: float
    per_class_acc: list[float]  # NaN for classes absent from the split

    @staticmethod
    def empty(num_classes: int) -> Evaluation:
        return Evaluation(float("nan"), float("nan"), [float("nan")] * num_classes)


@torch.no_grad()
def predictions(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """Logits for ``x`` in batches, on the model's device; the caller sets the mode."""
    device = next(model.parameters()).device
    chunks = [model(batch.to(device)) for batch in x.split(batch_size)]
    return torch.cat(chunks) if chunks else torch.empty(0)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int,
             batch_size: int = 1000) -> Evaluation:
    if len(y) == 0:
        return Evaluation.empty(num_classes)
    logits = predictions(model, x, batch_size=batch_size)
    y = y.to(logits.device)
    loss = nn.functional.cross_entropy(logits, y).item()
    correct = (logits.argmax(1) == y).float()
    # a count over a count, in Python floats: 0.895, not float32's 0.8949999809
    return Evaluation(loss, int(correct.sum().item()) / len(y), class_accuracy(correct, y, num_classes))


def class_accuracy(correct: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[float]:
    """Mean of ``correct`` per class, vectorised; NaN where a class has no example."""
    totals = torch.bincount(y, minlength=num_classes).float()
    hits = torch.bincount(y, weights=correct.float(), minlength=num_classes)
    return [hit / total if total else float("nan")
            for hit, total in zip(hits.tolist(), totals.tolist())]
