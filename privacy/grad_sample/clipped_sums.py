"""Clipped gradient sums as one weighted product per layer (book-keeping, Bu et al. 2023).

With clipping factors ``c_n`` the clipped sum of a layer's per-sample weight gradients is
``sum_n c_n g_n a_n^T``: the ordinary weight gradient of the batch with each example's output
gradient scaled by ``c_n``. So it costs what the weight gradient of a plain backward costs,
and runs the same kernels (``aten.convolution_backward`` for convolutions).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .ghost_norms import padded


def _scaled(grad: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    return grad * coef.to(grad.dtype).view(-1, *(1,) * (grad.dim() - 1))


def linear_clipped_sum(layer: nn.Linear, a: torch.Tensor, grad: torch.Tensor,
                       coef: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """``nn.Linear`` on inputs of shape (N, ..., in): sums over examples and positions."""
    g = _scaled(grad, coef).reshape(-1, layer.out_features)
    sums = {}
    if layer.weight.requires_grad:
        sums[layer.weight] = g.t() @ a.to(g.dtype).reshape(-1, layer.in_features)
    if layer.bias is not None and layer.bias.requires_grad:
        sums[layer.bias] = g.sum(dim=0)
    return sums


def conv_clipped_sum(layer: nn.Conv1d | nn.Conv2d, a: torch.Tensor, grad: torch.Tensor,
                     coef: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """``nn.Conv1d`` / ``nn.Conv2d``: the convolution's own weight-gradient kernel."""
    x, padding = padded(layer, a.to(grad.dtype))
    bias = layer.bias is not None and layer.bias.requires_grad
    _, weight_sum, bias_sum = torch.ops.aten.convolution_backward(
        _scaled(grad, coef), x, layer.weight, [layer.out_channels] if bias else None,
        list(layer.stride), list(padding), list(layer.dilation), False,
        [0] * len(layer.kernel_size), layer.groups,
        [False, layer.weight.requires_grad, bias])
    sums = {}
    if layer.weight.requires_grad:
        sums[layer.weight] = weight_sum
    if bias and layer.bias is not None:
        sums[layer.bias] = bias_sum
    return sums


def weighted_sum(samples: dict[torch.Tensor, torch.Tensor],
                 coef: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """Clipped sums of already instantiated per-sample gradients (N, *param.shape)."""
    # a matrix-vector product: torch.einsum parses its equation on every call (~40 us each,
    # a dozen calls a step on a small model)
    return {p: (coef.to(gs.dtype) @ gs.flatten(1)).view(gs.shape[1:])
            for p, gs in samples.items()}


CLIPPED_SUMS: dict[type[nn.Module], Callable[..., dict[torch.Tensor, torch.Tensor]]] = {
    nn.Linear: linear_clipped_sum, nn.Conv1d: conv_clipped_sum,
    nn.Conv2d: conv_clipped_sum}
