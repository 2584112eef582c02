"""Opacus' fast-clipping optimizer without its copies: the clipped sum is noised where it lies.

Opacus' ``DPOptimizerFastGradientClipping`` deep-copies every ``p.grad`` into
``p.summed_grad``, then builds a zero tensor and a noise tensor per parameter and stores
``summed_grad + noise`` as a third tensor: at the step two to three copies of the model's
gradients are alive at once, where a plain optimizer holds one. Here ``accumulate`` moves
``p.grad`` into ``p.summed_grad`` (no copy; the next physical batch adds into it) and
``add_noise`` draws each parameter's noise and adds it in place, one parameter at a time.

The noise is the same as Opacus': one ``normal(0, sigma * C)`` draw per parameter of its
shape and dtype, from the same generator in the same (parameter) order; ``secure_mode`` keeps
Opacus' own generator. Everything else (skip queue for BatchMemoryManager, processed flags
that refuse a reused gradient, scaling, step hooks) is Opacus' code, unchanged.
"""

from __future__ import annotations

import torch
from opacus.optimizers import DPOptimizerFastGradientClipping
from opacus.optimizers.optimizer import (
    _check_processed_flag,
    _generate_noise,
    _mark_as_processed,
)


class InPlaceNoiseOptimizer(DPOptimizerFastGradientClipping):
    """Noise added to the clipped sum in place: one copy of the gradients, as without DP."""

    def accumulate(self) -> None:
        """Move ``p.grad`` into ``p.summed_grad`` (or add it there for a later physical batch):
        after this, ``p.grad`` is None until :meth:`add_noise` sets the noised sum."""
        for p in self.params:
            if p.summed_grad is None:
                p.summed_grad = p.grad.detach()
            else:
                p.summed_grad.add_(p.grad)
            p.grad = None

    def add_noise(self) -> None:
        sigma = getattr(self, "_adjusted_noise_multiplier", self.noise_multiplier)
        std = sigma * self.max_grad_norm
        for p in self.params:
            _check_processed_flag(p.summed_grad)
            grad = p.summed_grad
            if self.secure_mode:
                grad.add_(_generate_noise(std=std, reference=grad, generator=self.generator,
                                          secure_mode=True))
            elif std != 0:  # Opacus draws nothing at std 0
                # what torch.normal(0, std, size) does: normal_ on a new contiguous tensor
                noise = torch.empty(grad.shape, dtype=grad.dtype, device=grad.device)
                grad.add_(noise.normal_(0, std, generator=self.generator))
            p.grad = grad.view_as(p)
            _mark_as_processed(p.summed_grad)
