"""What DP-SGD did to the last batch's gradients, read from Opacus' own per-sample norms.

Call after ``loss.backward()`` and before ``optimizer.step()``: the step consumes the
per-sample gradients (hooks modes) and the next backward overwrites the norms (ghost mode).
"""

from __future__ import annotations

import torch

from .engine import PrivateTraining
from .grad_sample.modes import MODES


def per_sample_norms(private: PrivateTraining) -> torch.Tensor:
    """The L2 norm of each example's whole gradient, before clipping."""
    if MODES[private.mode].fast_clipping:
        # fast-clipping modes never materialise every per-sample gradient; the norms they clip
        # by are what their module computed in the backward pass
        return private.module.per_sample_gradient_norms.detach()
    samples = private.optimizer.grad_samples
    per_param = [g.reshape(len(g), -1).norm(2, dim=1) for g in samples]
    return torch.stack(per_param, dim=1).norm(2, dim=1).detach()


def clipped_fraction(private: PrivateTraining) -> float:
    """Share of the batch whose gradient norm exceeds the current clipping bound: near 1
    means clipping, not the LR, sets the update size."""
    norms = per_sample_norms(private)
    if norms.numel() == 0:  # Poisson sampling can draw an empty batch
        return float("nan")
    return (norms > private.optimizer.max_grad_norm).float().mean().item()
