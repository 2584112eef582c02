"""Book-keeping DP clipping: one backward pass instead of ghost clipping's two.

Bu et al. 2023 (arXiv:2210.00038). In the forward pass every trainable layer keeps its input,
and its output passes through a tap (an identity autograd function). One backward pass of
the summed per-sample losses towards the taps' anchors gives each tap its layer's output
gradient, and computes no weight gradient at all. At its tap each layer then either
- instantiates its per-sample gradients when that is cheap (GroupNorm, from the group
  statistics of its forward pass, :mod:`.group_norm`; early convolutions
  with many positions and few weights; layers called twice or sharing a parameter; any layer
  without a rule below: Opacus' grad sampler, else functorch) and lets the input and output
  gradient go, or
- computes its per-sample norms from (input, output gradient) without holding them (the
  Linear rule and the Gram form of :mod:`.ghost_norms` for wide late convolutions; strided
  convolutions whose per-sample gradients outweigh the pair instantiate them chunk by chunk,
  :func:`~.ghost_norms.conv_keeps_pair`) and keeps the pair for its clipped sum: ONE
  weighted product, the layer's usual weight-gradient kernel on output gradients scaled per
  example (:mod:`.clipped_sums`).
Opacus' fast-clipping optimizer (its in-place subclass, :mod:`.in_place_noise`) then adds
the noise to the clipped sum. Each layer's input, output gradient and per-sample gradients are
let go as soon as its part is done.
"""

from __future__ import annotations

from functools import partial

import torch
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from opacus.grad_sample.functorch import ft_compute_per_sample_gradient, prepare_layer
from opacus.utils.module_utils import requires_grad
from torch import nn

from . import ghost_norms, group_norm
from .clipped_sums import CLIPPED_SUMS, weighted_sum

GRAD_SAMPLES: dict[type[nn.Module], ghost_norms.Rule] = {
    nn.Conv1d: ghost_norms.conv_grad_sample, nn.Conv2d: ghost_norms.conv_grad_sample,
    nn.GroupNorm: group_norm.group_norm_grad_sample}


class _Tap(torch.autograd.Function):
    """Identity on a layer's output; its backward hands the output gradient to ``callback``.
    The output is a view, so an in-place change of it downstream is refused by autograd."""

    @staticmethod
    def forward(ctx, output, anchor, callback):
        ctx.callback = callback
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad):
        callback, ctx.callback = ctx.callback, None  # the graph outlives the step: let the
        callback(grad)  # layer's input go as soon as its tap has run
        return grad, torch.zeros((), dtype=grad.dtype, device=grad.device), None


class BookKeepingModule(GradSampleModuleFastGradientClipping):
    """Opacus' fast-clipping module with forward hooks only; the loss wrapper of
    :class:`~.bookkeeping_loss.BookKeepingLoss` calls :meth:`clip_backward` instead of running
    two backward passes."""

    NORM_SAMPLERS: dict[type[nn.Module], ghost_norms.Rule] = {
        **GradSampleModuleFastGradientClipping.NORM_SAMPLERS, **ghost_norms.NORM_SAMPLERS}
    KEEPS_PAIR = staticmethod(ghost_norms.conv_keeps_pair)  # per convolution call

    def add_hooks(self, *, loss_reduction: str = "mean", batch_first: bool = True,
                  force_functorch: bool = False) -> None:
        if not batch_first:
            raise NotImplementedError("grad_sample_mode 'ghost_bk' needs batch_first=True")
        if hasattr(self._module, "autograd_grad_sample_hooks"):
            raise ValueError("Trying to add hooks twice to the same model")
        self._reset()
        self.autograd_grad_sample_hooks = self._module.autograd_grad_sample_hooks = []
        owners: dict[nn.Parameter, list[nn.Module]] = {}
        for module in self.iterate_submodules(self._module):
            for p in module.parameters(recurse=False):
                owners.setdefault(p, []).append(module)
            if force_functorch or type(module) not in self.GRAD_SAMPLERS:
                prepare_layer(module, batch_first=True)
            self.autograd_grad_sample_hooks.append(module.register_forward_hook(self._record))
        self._tied = {m for sharing in owners.values() if len(sharing) > 1 for m in sharing}
        self.enable_hooks()

    def _reset(self) -> None:
        self._clipping = False  # True inside clip_backward only
        self._anchors: list[torch.Tensor] = []
        self._calls: dict[nn.Module, int] = {}  # forward calls per layer since the last step
        self._samples: dict[torch.Tensor, torch.Tensor] = {}  # instantiated, summed over calls
        self._norms: dict[torch.Tensor, torch.Tensor] = {}  # of the layers kept as pairs
        self._kept: list = []  # clipped-sum functions of coef for the layers kept as pairs

    def _record(self, module: nn.Module, inputs, output):
        if not (self.hooks_enabled and module.training and torch.is_grad_enabled()
                and requires_grad(module)):
            return None
        if not isinstance(output, torch.Tensor):
            raise NotImplementedError(f"grad_sample_mode 'ghost_bk': {type(module).__name__} "
                                      f"returns {type(output).__name__}, not one tensor")
        self._calls[module] = self._calls.get(module, 0) + 1
        anchor = torch.zeros((), dtype=output.dtype, device=output.device, requires_grad=True)
        self._anchors.append(anchor)
        activations = [t.detach() for t in inputs]
        extras = group_norm.FORWARD_EXTRAS.get(type(module))
        if extras is not None and not self.force_functorch:  # GroupNorm's group statistics
            activations += extras(module, output)
        return _Tap.apply(output, anchor, partial(self._at_tap, module, activations))

    def _at_tap(self, module: nn.Module, activations: list, grad: torch.Tensor) -> None:
        if not self._clipping:  # a plain backward would leave per-sample state for the next
            self._reset()  # step and unclipped gradients: refuse it loudly
            raise RuntimeError(
                "grad_sample_mode 'ghost_bk': backward pass outside the DP loss; call "
                "backward() on the private criterion's loss, and attack inside hooks_disabled")
        kind, grad = type(module), grad.detach()
        keep = (self._calls[module] == 1 and module not in self._tied and kind in CLIPPED_SUMS
                and not (isinstance(module, ghost_norms.CONVS)
                         and not self.KEEPS_PAIR(module, activations[0], grad)))
        if keep:
            norms = self.NORM_SAMPLERS[kind](module, activations, grad)
            # Opacus' Linear rule covers inputs of 2 or 3 dimensions only: a parameter
            # without a norm would escape clipping, so such a call is instantiated instead
            if set(norms) == {p for p in module.parameters(recurse=False) if p.requires_grad}:
                self._norms.update(norms)
                self._kept.append(partial(CLIPPED_SUMS[kind], module, activations[0], grad))
                return
        sampler = (ft_compute_per_sample_gradient if self.force_functorch else
                   GRAD_SAMPLES.get(kind) or self.GRAD_SAMPLERS.get(kind,
                                                                   ft_compute_per_sample_gradient))
        for p, gs in sampler(module, activations, grad).items():
            self._samples[p] = self._samples[p] + gs if p in self._samples else gs

    def clip_backward(self, loss_per_sample: torch.Tensor) -> None:
        """Set ``p.grad`` to the sum over examples of the clipped per-sample gradients."""
        try:
            self._clipping = True
            for p in self.trainable_parameters:  # set below, never accumulated: free it now
                p.grad = None
            if len(loss_per_sample) and self._anchors:  # else an empty batch: noise only
                torch.autograd.grad(loss_per_sample.sum(), self._anchors, allow_unused=True)
            norms = {**self._norms, **{p: gs.flatten(1).norm(2, dim=1)
                                       for p, gs in self._samples.items()}}
            per_param = [norms[p] for p in self.trainable_parameters if p in norms]
            self.per_sample_gradient_norms = (torch.stack(per_param).norm(2, dim=0) if per_param
                                              else loss_per_sample.new_zeros(0))
            coef = (self.max_grad_norm / (self.per_sample_gradient_norms + 1e-6)).clamp(max=1.0)
            # per-sample gradients first: N times their parameters' size, they make room for
            # the large late layers' sums; each layer's tensors go as soon as it is summed
            for p in list(self._samples):
                p.grad = weighted_sum({p: self._samples.pop(p)}, coef)[p].view_as(p)
            while self._kept:
                for p, grad in self._kept.pop()(coef).items():
                    p.grad = grad.view_as(p)
            for p in self.trainable_parameters:
                if p.grad is None:  # not reached by this loss: no gradient, as autograd gives
                    p.grad = torch.zeros_like(p)
        finally:
            self._reset()
