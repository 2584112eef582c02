"""Per-sample gradients of GroupNorm's affine parameters from the forward pass's statistics.

With ``xhat = (x - mean_group) * rstd_group`` the normalised input, example n's gradients are
``sum_positions xhat * g`` (weight) and ``sum_positions g`` (bias), per channel: 2 x C values
per example, cheaper to instantiate than any ghost form. Opacus' grad sampler recomputes
``xhat`` with a full ``F.group_norm`` (statistics and a normalised copy); the forward pass has
already computed the statistics and autograd keeps them for GroupNorm's own backward
(``grad_fn._saved_result1`` / ``_saved_result2``): book-keeping takes them at the forward hook
(:data:`FORWARD_EXTRAS`), which saves most of the layer's cost. Without them (another mode, or
no autograd node) they are recomputed. Equality with Opacus' hooks mode is tested
property-wise in tests/privacy/test_ghost_norms.py.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def saved_statistics(layer: nn.GroupNorm, output: torch.Tensor) -> list[torch.Tensor]:
    """[mean, rstd], each (N, groups), as the forward pass computed them; [] if not kept."""
    node, shape = output.grad_fn, (output.shape[0], layer.num_groups)
    stats = [getattr(node, name, None) for name in ("_saved_result1", "_saved_result2")]
    kept = [s.detach() for s in stats if isinstance(s, torch.Tensor) and s.shape == shape]
    return kept if len(kept) == 2 else []


def group_norm_grad_sample(layer: nn.GroupNorm, activations: list[torch.Tensor],
                           backprops: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """(N, C) per-sample gradients of ``weight`` and ``bias`` (grad-sampler signature);
    ``activations`` is [input] or [input, mean, rstd] (:func:`saved_statistics`)."""
    x, n = activations[0].to(backprops.dtype), backprops.shape[0]
    grads = backprops.reshape(n, layer.num_channels, -1)
    samples: dict[torch.Tensor, torch.Tensor] = {}
    if layer.weight is not None and layer.weight.requires_grad:
        if len(activations) == 3:
            # sum (x - mean) * g over positions, then scale by rstd, constant per group: one
            # pass over the activations fewer than normalising first; one temporary, in place
            mean, rstd = (s.to(x.dtype).unsqueeze(-1) for s in activations[1:])
            centred = (x.reshape(n, layer.num_groups, -1) - mean).view_as(grads)
            sums = centred.mul_(grads).sum(dim=-1).view(n, layer.num_groups, -1)
            samples[layer.weight] = sums.mul_(rstd).view(n, layer.num_channels)
        else:
            xhat = torch.ops.aten.native_group_norm(
                x, None, None, n, layer.num_channels, grads.shape[-1], layer.num_groups,
                layer.eps)[0].view_as(grads)
            samples[layer.weight] = xhat.mul_(grads).sum(dim=-1)
    if layer.bias is not None and layer.bias.requires_grad:
        samples[layer.bias] = grads.sum(dim=-1)
    return samples


FORWARD_EXTRAS: dict[type[nn.Module], Callable[..., list[torch.Tensor]]] = {
    nn.GroupNorm: saved_statistics}
