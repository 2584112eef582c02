"""robustlr's grad_sample modes, plugged into Opacus' PrivacyEngine through its own hooks.

- ``ghost_mixed``: Opacus' ghost clipping (two backward passes) with the mixed ghost norm
  rules of :mod:`.ghost_norms` added to its norm-sampler table for Conv1d/Conv2d/GroupNorm
  (Opacus 1.6 instantiates their per-sample gradients). Opacus' own ``ghost`` is unchanged.
- ``ghost_bk``: book-keeping (:mod:`.bookkeeping`), one backward pass.

Both use Opacus' fast-clipping optimizer (noise on the clipped sum; in its in-place
subclass :class:`~.in_place_noise.InPlaceNoiseOptimizer`) and loss wrapper, so the training
loop contract of ``ghost`` holds for them unchanged.
"""

from __future__ import annotations

from opacus import PrivacyEngine
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from opacus.optimizers import DPOptimizerFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import (
    DPLossFastGradientClipping,
    DPTensorFastGradientClipping,
)

from . import ghost_norms
from .bookkeeping import BookKeepingModule
from .in_place_noise import InPlaceNoiseOptimizer


class MixedGhostModule(GradSampleModuleFastGradientClipping):
    """Opacus' ghost clipping module with a norm-sampler table that includes convolutions."""

    NORM_SAMPLERS = {**GradSampleModuleFastGradientClipping.NORM_SAMPLERS,
                     **ghost_norms.NORM_SAMPLERS}


class BookKeepingTensor(DPTensorFastGradientClipping):
    """Opacus' DP loss tensor whose ``backward()`` is the single book-keeping pass.

    Opacus' arithmetic operators build the base class; each is wrapped so a scaled or summed
    loss (``w * loss + other``) keeps the single-pass backward.
    """

    def _same(self, out: DPTensorFastGradientClipping) -> BookKeepingTensor:
        return BookKeepingTensor(out.module, out.optimizer, out.loss_per_sample,
                                 out.loss_reduction)

    def __truediv__(self, other):
        return self._same(super().__truediv__(other))

    def __mul__(self, other):
        return self._same(super().__mul__(other))

    def __rmul__(self, other):
        return self._same(super().__rmul__(other))

    def __add__(self, other):
        return self._same(super().__add__(other))

    def __radd__(self, other):
        return self._same(super().__radd__(other))

    def __sub__(self, other):
        return self._same(super().__sub__(other))

    def __rsub__(self, other):
        return self._same(super().__rsub__(other))

    def __neg__(self):
        return self._same(super().__neg__())

    def backward(self):
        if self.loss_reduction not in ("mean", "sum"):
            raise ValueError(f"loss_reduction must be 'mean' or 'sum', got {self.loss_reduction!r}")
        self.module.clip_backward(self.loss_per_sample)


class BookKeepingLoss(DPLossFastGradientClipping):
    def __call__(self, *args, **kwargs) -> BookKeepingTensor:
        out = super().__call__(*args, **kwargs)
        return BookKeepingTensor(out.module, out.optimizer, out.loss_per_sample,
                                 out.loss_reduction)


MODULES = {"ghost_mixed": MixedGhostModule, "ghost_bk": BookKeepingModule}


class Engine(PrivacyEngine):
    """Opacus' PrivacyEngine that also knows the modes of :data:`MODULES`; everything else
    (optimizer, data loader, accountant hooks) is Opacus' own ``ghost`` path."""

    def _prepare_model(self, module, *, grad_sample_mode: str = "hooks", **kwargs):
        if grad_sample_mode not in MODULES:
            return super()._prepare_model(module, grad_sample_mode=grad_sample_mode, **kwargs)
        if not kwargs.get("wrap_model", True):
            raise ValueError(f"grad_sample_mode {grad_sample_mode!r} needs wrap_model=True")
        self.validate(module=module, optimizer=None, data_loader=None)
        return MODULES[grad_sample_mode](
            module, batch_first=kwargs.get("batch_first", True),
            loss_reduction=kwargs.get("loss_reduction", "mean"),
            max_grad_norm=kwargs.get("max_grad_norm", 1.0))

    def _prepare_optimizer(self, *, grad_sample_mode: str = "hooks", **kwargs):
        if grad_sample_mode not in MODULES:
            return super()._prepare_optimizer(grad_sample_mode=grad_sample_mode, **kwargs)
        opacus = super()._prepare_optimizer(grad_sample_mode="ghost", **kwargs)
        if type(opacus) is not DPOptimizerFastGradientClipping:  # distributed: Opacus' own
            return opacus
        return InPlaceNoiseOptimizer(  # the same settings, noise added in place
            optimizer=opacus.original_optimizer, noise_multiplier=opacus.noise_multiplier,
            max_grad_norm=opacus.max_grad_norm, expected_batch_size=opacus.expected_batch_size,
            loss_reduction=opacus.loss_reduction, generator=opacus.generator,
            secure_mode=opacus.secure_mode)

    def _prepare_criterion(self, *, module, optimizer, criterion, loss_reduction="mean",
                           **kwargs):
        if isinstance(module, BookKeepingModule):
            return BookKeepingLoss(module, optimizer, criterion, loss_reduction)
        return super()._prepare_criterion(module=module, optimizer=optimizer,
                                          criterion=criterion, loss_reduction=loss_reduction)
