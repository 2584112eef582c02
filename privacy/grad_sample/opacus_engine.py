"""Opacus' PrivacyEngine that also builds the modes of :mod:`.modes` that bring their own
module class, through Opacus' own ``_prepare_*`` hooks.

Those modes use Opacus' fast-clipping optimizer (noise on the clipped sum; in its in-place
subclass :class:`~.in_place_noise.InPlaceNoiseOptimizer`) and loss wrapper (or their own,
``GradSampleMode.loss``), so the training loop contract of ``ghost`` holds for them unchanged.
"""

from __future__ import annotations

from opacus import PrivacyEngine
from opacus.optimizers import DPOptimizerFastGradientClipping

from .in_place_noise import InPlaceNoiseOptimizer
from .modes import MODES, GradSampleMode


def _own(grad_sample_mode: str) -> GradSampleMode | None:
    """The mode's row when robustlr builds its module, None when Opacus does."""
    row = MODES.get(grad_sample_mode)
    return row if row is not None and row.module is not None else None


class Engine(PrivacyEngine):
    """Opacus' PrivacyEngine that also knows the modes with a ``module`` in :data:`.MODES`;
    everything else (optimizer, data loader, accountant hooks) is Opacus' own ``ghost`` path."""

    def _prepare_model(self, module, *, grad_sample_mode: str = "hooks", **kwargs):
        row = _own(grad_sample_mode)
        if row is None or row.module is None:
            return super()._prepare_model(module, grad_sample_mode=grad_sample_mode, **kwargs)
        if not kwargs.get("wrap_model", True):
            raise ValueError(f"grad_sample_mode {grad_sample_mode!r} needs wrap_model=True")
        self.validate(module=module, optimizer=None, data_loader=None)
        return row.module(
            module, batch_first=kwargs.get("batch_first", True),
            loss_reduction=kwargs.get("loss_reduction", "mean"),
            max_grad_norm=kwargs.get("max_grad_norm", 1.0))

    def _prepare_optimizer(self, *, grad_sample_mode: str = "hooks", **kwargs):
        if _own(grad_sample_mode) is None:
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
        # Opacus passes no mode here: the module's class says which row built it
        for row in MODES.values():
            if row.loss is not None and row.module is not None and type(module) is row.module:
                return row.loss(module, optimizer, criterion, loss_reduction)
        return super()._prepare_criterion(module=module, optimizer=optimizer,
                                          criterion=criterion, loss_reduction=loss_reduction)
