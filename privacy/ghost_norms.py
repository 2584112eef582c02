"""Per-sample gradient norms of convolutions and GroupNorm, for Opacus' norm-sampler registry.

Mixed ghost clipping (Bu et al. 2022, arXiv:2205.10683). For a convolution with unfolded
input patches ``a_t`` (p values each) and output gradients ``g_t`` (o values) at the T output
positions, one example's weight gradient is ``sum_t g_t a_t^T`` and

    ||sum_t g_t a_t^T||^2 = sum_{t,t'} (a_t . a_t') (g_t . g_t')   (the "ghost" Gram form).

The Gram form costs about ``T^2 (o + p)`` per example and group, instantiating the per-sample
gradient ``T o p``: each layer takes the cheaper one, so wide late layers (few positions, many
weights) go ghost and early ones (many positions, few weights) are instantiated. Examples are
processed in chunks so the unfolded patches never take more memory than the layer's input.

Everything here is a pure function ``(layer, activations, backprops) -> {param: tensor}`` with
Opacus' grad-sampler signature; equality with Opacus' hooks mode is tested property-wise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from opacus.grad_sample import GradSampleModule
from torch import nn

CONVS = (nn.Conv1d, nn.Conv2d)
MIN_CHUNK_ELEMENTS = 1 << 22  # 16 MB of float32 patches: below this, chunking only adds calls


def padded(layer: nn.Conv1d | nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    """``x`` with the layer's padding applied when it is not plain symmetric zeros, and the
    padding still to apply (string paddings and reflect/replicate/circular modes become
    explicit ``F.pad`` calls, as ``nn.Conv*d`` does internally)."""
    if layer.padding_mode == "zeros" and not isinstance(layer.padding, str):
        return x, tuple(layer.padding)
    mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    x = F.pad(x, layer._reversed_padding_repeated_twice, mode=mode)
    return x, (0,) * len(layer.kernel_size)


def unfold(layer: nn.Conv1d | nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Input patches as the layer sees them: (N, groups, C_in/groups * prod(kernel), T)."""
    x, padding = padded(layer, x)
    kernel, stride, dilation = layer.kernel_size, layer.stride, layer.dilation
    if isinstance(layer, nn.Conv1d):  # a 1-D conv is a 2-D one over a height-1 image
        x, padding = x.unsqueeze(-2), (0,) + padding
        kernel, stride, dilation = (1,) + kernel, (1,) + stride, (1,) + dilation
    cols = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
    return cols.view(x.shape[0], layer.groups, -1, cols.shape[-1])


def uses_gram(*, positions: int, out_channels: int, patch: int) -> bool:
    """Ghost (Gram) norm when it needs fewer multiply-adds than instantiating the gradient."""
    return positions * (out_channels + patch) < out_channels * patch


def conv_weight_norms(layer: nn.Conv1d | nn.Conv2d, a: torch.Tensor,
                      g: torch.Tensor) -> torch.Tensor:
    """Per-sample norms of the weight gradient; ``g`` is (N, groups, out/groups, T)."""
    n, groups, out, positions = g.shape
    patch = layer.weight[0].numel()
    gram = uses_gram(positions=positions, out_channels=out, patch=patch)
    per_example = groups * (patch * positions + (positions ** 2 if gram else out * patch))
    rows = max(1, max(MIN_CHUNK_ELEMENTS, a[0].numel() * n) // per_example)
    squares = []
    for start in range(0, n, rows):
        cols, grads = unfold(layer, a[start:start + rows]), g[start:start + rows]
        if gram:
            square = ((cols.transpose(-1, -2) @ cols) * (grads.transpose(-1, -2) @ grads))
        else:
            square = (grads @ cols.transpose(-1, -2)).square()
        squares.append(square.sum(dim=(1, 2, 3)))
    return torch.cat(squares).clamp(min=0).sqrt()


def conv_norm_sample(layer: nn.Conv1d | nn.Conv2d, activations: list[torch.Tensor],
                     backprops: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
    """Norm sampler for ``nn.Conv1d`` / ``nn.Conv2d`` (mixed ghost / instantiated)."""
    a = activations[0].to(backprops.dtype)
    n = a.shape[0]
    g = backprops.flatten(2)  # (N, out, T), also for an empty batch
    g = g.view(n, layer.groups, layer.out_channels // layer.groups, g.shape[-1])
    norms = {}
    if layer.weight.requires_grad:
        norms[layer.weight] = (conv_weight_norms(layer, a, g) if n else a.new_zeros(0))
    if layer.bias is not None and layer.bias.requires_grad:
        norms[layer.bias] = g.sum(dim=-1).flatten(1).norm(dim=1)
    return norms


def instantiated_norms(layer: nn.Module, activations: list[torch.Tensor],
                       backprops: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
    """Norms of the per-sample gradients from Opacus' own grad sampler for the layer type:
    right for layers whose per-sample gradients are small (GroupNorm: 2 x C values)."""
    sampler = GradSampleModule.GRAD_SAMPLERS[type(layer)]
    return {p: gs.flatten(1).norm(dim=1)
            for p, gs in sampler(layer, activations, backprops).items()}


NORM_SAMPLERS = {nn.Conv1d: conv_norm_sample, nn.Conv2d: conv_norm_sample,
                 nn.GroupNorm: instantiated_norms}
