"""``ghost_bk``'s loss: Opacus' fast-clipping loss wrapper whose ``backward()`` is the single
book-keeping pass of :class:`~.bookkeeping.BookKeepingModule` instead of two passes."""

from __future__ import annotations

from opacus.utils.fast_gradient_clipping_utils import (
    DPLossFastGradientClipping,
    DPTensorFastGradientClipping,
)


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
