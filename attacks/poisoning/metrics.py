"""Backdoor metrics in BackdoorBench's vocabulary.

Wu et al., "BackdoorBench: A Comprehensive Benchmark of Backdoor Learning", NeurIPS 2022
Datasets and Benchmarks, https://arxiv.org/abs/2206.12654: attack success rate (ASR) and
robust accuracy (RA) are both measured on triggered test inputs whose true class is not the
target (a target-class input "succeeds" trivially).
"""

from __future__ import annotations

import torch
from torch import nn


def backdoor_metrics(model: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor, poison, *,
                     batch_size: int = 500) -> dict[str, float] | None:
    """``{"asr", "ra"}`` of ``model`` under ``poison``'s trigger; None for attacks without a
    trigger (label flips, ``none``). The model is put in eval mode and restored afterwards."""
    if not hasattr(poison, "apply_trigger"):
        return None
    keep = y_test != poison.target
    x, y = x_test[keep], y_test[keep]
    if len(y) == 0:
        raise ValueError("x_test has no example outside the target class; ASR is undefined")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    predictions = []
    try:
        with torch.no_grad():
            for batch in x.split(batch_size):
                logits = model(poison.apply_trigger(batch).to(device))
                predictions.append(logits.argmax(dim=1).cpu())
    finally:
        model.train(was_training)
    predicted = torch.cat(predictions)
    return {"asr": (predicted == poison.target).float().mean().item(),
            "ra": (predicted == y).float().mean().item()}
