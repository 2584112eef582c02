"""Book-keeping DP clipping: one backward pass instead of ghost clipping's two.

Bu et al. 2023 (arXiv:2210.00038). The forward pass keeps each trainable layer's input and
output; one ``torch.autograd.grad`` of the summed per-sample losses with respect to the layer
outputs gives every layer's output gradients without computing any weight gradient. From
the stored (input, output gradient) pairs come the per-sample norms (mixed ghost rules of
:mod:`.ghost_norms`, Opacus' own norm samplers), the clipping factors, and finally each
layer's clipped gradient sum as ONE weighted product: the usual weight-gradient kernel run on
output gradients scaled per example. Opacus' fast-clipping optimizer then adds the noise.

A layer called more than once per forward pass, or without a weighted-product rule, has its
per-sample gradients instantiated (Opacus' grad sampler, else functorch) and summed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from opacus.grad_sample.functorch import ft_compute_per_sample_gradient, prepare_layer
from opacus.utils.module_utils import requires_grad
from torch import nn

from . import ghost_norms
from .clipped_sums import CLIPPED_SUMS, weighted_sum


@dataclass
class _Call:
    module: nn.Module
    activations: list[torch.Tensor]
    output: torch.Tensor
    version: int  # the output's version counter at the end of the layer's forward


class BookKeepingModule(GradSampleModuleFastGradientClipping):
    """Opacus' fast-clipping module with forward hooks only; the loss wrapper of
    :class:`BookKeepingLoss` calls :meth:`clip_backward` instead of two backward passes."""

    NORM_SAMPLERS = {**GradSampleModuleFastGradientClipping.NORM_SAMPLERS,
                     **ghost_norms.NORM_SAMPLERS}

    def add_hooks(self, *, loss_reduction: str = "mean", batch_first: bool = True,
                  force_functorch: bool = False) -> None:
        if not batch_first:
            raise NotImplementedError("grad_sample_mode 'ghost_bk' needs batch_first=True")
        if hasattr(self._module, "autograd_grad_sample_hooks"):
            raise ValueError("Trying to add hooks twice to the same model")
        self._calls: list[_Call] = []
        self.autograd_grad_sample_hooks = self._module.autograd_grad_sample_hooks = []
        owners: dict[nn.Parameter, int] = {}
        for module in self.iterate_submodules(self._module):
            for p in module.parameters(recurse=False):
                owners[p] = owners.get(p, 0) + 1
        self._tied = {p for p, count in owners.items() if count > 1}
        for module in self.iterate_submodules(self._module):
            if force_functorch or type(module) not in self.GRAD_SAMPLERS:
                prepare_layer(module, batch_first=True)
            self.autograd_grad_sample_hooks.append(module.register_forward_hook(self._record))
        self.enable_hooks()

    def _record(self, module: nn.Module, inputs, output) -> None:
        if not (self.hooks_enabled and module.training and torch.is_grad_enabled()
                and requires_grad(module)):
            return
        if not isinstance(output, torch.Tensor):
            raise NotImplementedError(f"grad_sample_mode 'ghost_bk': {type(module).__name__} "
                                      f"returns {type(output).__name__}, not one tensor")
        self._calls.append(_Call(module, [t.detach() for t in inputs], output, output._version))

    def clip_backward(self, loss_per_sample: torch.Tensor) -> None:
        """Set ``p.grad`` to the sum over examples of the clipped per-sample gradients."""
        calls, self._calls = self._calls, []
        for call in calls:
            if call.output._version != call.version:  # its gradient would be the wrong one
                raise RuntimeError(f"{type(call.module).__name__}'s output was modified in "
                                   "place after its forward pass; use out-of-place operations")
        calls = [c for c in calls if c.output.requires_grad]
        if len(loss_per_sample) == 0:  # an empty Poisson batch: nothing to clip, noise only
            calls = []
        grads = torch.autograd.grad(loss_per_sample.sum(), [c.output for c in calls],
                                    allow_unused=True) if calls else ()
        by_module: dict[nn.Module, list] = {}
        for call, grad in zip(calls, grads):
            if grad is not None:
                by_module.setdefault(call.module, []).append((call.activations, grad))
        norms: dict[nn.Parameter, torch.Tensor] = {}
        tied: dict[nn.Parameter, torch.Tensor] = {}  # summed over the layers sharing them
        finish = [partial(weighted_sum, tied)]
        for module, pairs in by_module.items():
            if any(p in self._tied for p in module.parameters(recurse=False)):
                self._instantiate(module, pairs, tied)
            else:
                finish.append(self._layer(module, pairs, norms))
        norms.update({p: gs.flatten(1).norm(2, dim=1) for p, gs in tied.items()})
        per_example = [norms[p] for p in self.trainable_parameters if p in norms]
        self.per_sample_gradient_norms = (torch.stack(per_example).norm(2, dim=0) if per_example
                                          else loss_per_sample.new_zeros(0))
        coef = (self.max_grad_norm / (self.per_sample_gradient_norms + 1e-6)).clamp(max=1.0)
        for p in self.trainable_parameters:
            p.grad = None
        for clipped_sum in finish:
            for p, grad in clipped_sum(coef).items():
                p.grad = grad.view_as(p)
        for p in self.trainable_parameters:
            if p.grad is None:  # not reached by this loss: no gradient, as autograd would give
                p.grad = torch.zeros_like(p)

    def _layer(self, module: nn.Module, pairs: list, norms: dict) -> Callable:
        """Per-sample norms of ``module``'s parameters into ``norms``; returns the function
        mapping clipping factors to the layer's clipped gradient sums."""
        kind = type(module)
        if len(pairs) == 1 and kind in CLIPPED_SUMS and kind in self.NORM_SAMPLERS:
            (activations, grad), = pairs
            fast = self.NORM_SAMPLERS[kind](module, activations, grad)
            # Opacus' Linear rule covers inputs of 2 or 3 dimensions only: a parameter
            # without a norm would escape clipping, so such calls take the general path
            if set(fast) == {p for p in module.parameters(recurse=False) if p.requires_grad}:
                norms.update(fast)
                return partial(CLIPPED_SUMS[kind], module, activations[0], grad)
        samples: dict[nn.Parameter, torch.Tensor] = {}
        self._instantiate(module, pairs, samples)
        norms.update({p: gs.flatten(1).norm(2, dim=1) for p, gs in samples.items()})
        return partial(weighted_sum, samples)

    def _instantiate(self, module: nn.Module, pairs: list, samples: dict) -> None:
        """Add ``module``'s per-sample gradients, summed over its calls, into ``samples``."""
        sampler = (self.GRAD_SAMPLERS.get(type(module), ft_compute_per_sample_gradient)
                   if not self.force_functorch else ft_compute_per_sample_gradient)
        for activations, grad in pairs:
            for p, gs in sampler(module, activations, grad).items():
                samples[p] = samples[p] + gs if p in samples else gs
