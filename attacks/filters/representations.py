"""Penultimate-layer representations, the input of the spectral and clustering filters.

Tran, Li & Madry (2018) and Chen et al. (2018) both analyse the representation the classifier's
last linear layer reads; the logits lose most of the poison signal (docs/facts.md: ART on logits,
spectral recall 0.70 and clustering 0.45, against 1.0 / 0.99 on penultimate features).
"""

from __future__ import annotations

import torch
from torch import nn


def last_linear(model: nn.Module) -> nn.Linear:
    """The classifier head: ``model.head`` when it is an ``nn.Linear`` (a model that knows
    its logits layer says so there), else the last ``nn.Linear`` registered in ``model``."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError("model must contain an nn.Linear head to take its input as features")
    return linears[-1]


def penultimate(model: nn.Module, x: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """The (N, D) float32 CPU tensor fed to ``model``'s last ``nn.Linear`` for each input.

    Runs in eval mode without gradients; every submodule's mode is restored afterwards. The
    output is allocated once after the first batch (no list of batches to concatenate, so the
    peak is one copy of the features plus one batch).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    head = last_linear(model)
    device = head.weight.device
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    out = None
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                model(x[start:start + batch_size].to(device))
                batch = captured.pop().flatten(1).to("cpu", torch.float32)
                if out is None:
                    out = torch.empty((len(x), batch.shape[1]), dtype=torch.float32)
                out[start:start + len(batch)] = batch
    finally:
        hook.remove()
        for module, training in modes:
            module.training = training
    if out is None:  # an empty input: no forward pass, so the width comes from the head
        out = torch.empty((0, head.in_features), dtype=torch.float32)
    return out
