"""Per-sample gradient norms of convolutions, GroupNorm and Linear, for Opacus' norm-sampler
registry.

Mixed ghost clipping (Bu et al. 2022, arXiv:2205.10683). For a convolution with unfolded
input patches ``a_t`` (p values each) and output gradients ``g_t`` (o values) at the T output
positions, one example's weight gradient is ``sum_t g_t a_t^T`` and

    ||sum_t g_t a_t^T||^2 = sum_{t,t'} (a_t . a_t') (g_t . g_t')   (the "ghost" Gram form).

The Gram form costs about ``T^2 (o + p)`` per example and group, instantiating the per-sample
gradient ``T o p``: each layer takes the cheaper one, so wide late layers (few positions, many
weights) go ghost and early ones (many positions, few weights) are instantiated. Examples are
processed in chunks so the unfolded patches never take more memory than the layer's input,
and instantiated gradients a few MB at a time.

Everything here is a pure function ``(layer, activations, backprops) -> {param: tensor}`` with
Opacus' grad-sampler signature; equality with Opacus' hooks mode is tested property-wise.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from opacus.grad_sample import GradSampleModule, GradSampleModuleFastGradientClipping
from torch import nn

from . import pixel_gram

CONVS = (nn.Conv1d, nn.Conv2d)
Rule = Callable[..., dict[torch.Tensor, torch.Tensor]]
"""A per-layer rule, looked up by the layer's type: called with a layer of that type, its
activations and output gradient; one tensor per parameter (keyed by the parameter)."""
OPACUS_NORM_SAMPLERS: dict[type[nn.Module], Rule] = dict(GradSampleModuleFastGradientClipping.NORM_SAMPLERS)
MIN_CHUNK_ELEMENTS = 1 << 22  # 16 MB of float32 patches: below this, chunking only adds calls
# instantiated per-sample gradients, with the columns the weight-gradient kernel unfolds for
# them: 4 MB of float32 a chunk; larger chunks measured no faster (1x28x28 stride-2 convs,
# batch 256 and 2048) and the chunk adds to the step's peak memory
INSTANTIATED_CHUNK_ELEMENTS = 1 << 20


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


def conv_uses_gram(layer: nn.Conv1d | nn.Conv2d, backprops: torch.Tensor) -> bool:
    return uses_gram(positions=backprops[0, 0].numel(), patch=layer.weight[0].numel(),
                     out_channels=layer.out_channels // layer.groups)


def conv_keeps_pair(layer: nn.Conv1d | nn.Conv2d, a: torch.Tensor,
                    backprops: torch.Tensor) -> bool:
    """Book-keeping keeps the layer's (input, output gradient) for one clipped-sum product,
    rather than holding its N per-sample gradients until the clipping factors are known, when
    the Gram form is the cheaper norm or when the gradients outweigh the pair (a strided
    convolution with many channels: 16 -> 32 channels, 4x4 stride 2 on 14x14 holds 8,192
    values per example against 4,704 for the pair). Its norms are then computed chunk by
    chunk (:func:`conv_weight_norms`), at the price of one weight-gradient product more."""
    return (conv_uses_gram(layer, backprops)
            or layer.weight.numel() > a[0].numel() + backprops[0].numel())


def conv_weight_norms(layer: nn.Conv1d | nn.Conv2d, a: torch.Tensor,
                      backprops: torch.Tensor) -> torch.Tensor:
    """Per-sample norms of the weight gradient; ``backprops`` has the layer output's shape.
    The Gram form is computed over input pixels (:mod:`.pixel_gram`) or unfolded patches,
    whichever takes fewer multiply-adds."""
    n, positions = backprops.shape[0], backprops[0, 0].numel()
    groups, out = layer.groups, layer.out_channels // layer.groups
    patch = layer.weight[0].numel()
    gram = conv_uses_gram(layer, backprops)
    x, padding = padded(layer, a)
    pixel = gram and pixel_gram.cheaper(layer, x, backprops, padding)
    if pixel:
        pixels = math.prod(x.shape[2:]) + 1  # the zero slot of the padding
        per_example = groups * (pixels ** 2 + 2 * positions ** 2)
    elif gram:
        per_example = groups * (patch * positions + positions ** 2)
    else:  # the gradients and the columns the kernel unfolds for them
        per_example = groups * patch * (out + positions)
    budget = max(MIN_CHUNK_ELEMENTS, a[0].numel() * n) if gram else INSTANTIATED_CHUNK_ELEMENTS
    rows = max(1, budget // per_example)
    squares = []
    for start in range(0, n, rows):
        chunk, grads = a[start:start + rows], backprops[start:start + rows]
        if pixel:
            squares.append(pixel_gram.squared_norms(layer, x[start:start + rows], grads,
                                                    padding))
            continue
        if gram:
            cols, grads = unfold(layer, chunk), grads.reshape(len(grads), groups, out, positions)
            square = ((cols.transpose(-1, -2) @ cols) * (grads.transpose(-1, -2) @ grads))
            squares.append(square.flatten(1).sum(dim=1))
        else:  # one reduction pass, no squared copy (3x faster than square().sum() here)
            norms = torch.linalg.vector_norm(
                per_sample_weight_grads(layer, chunk, grads).flatten(1), dim=1)
            squares.append(norms.square())
    return torch.cat(squares).clamp(min=0).sqrt()


def per_sample_weight_grads(layer: nn.Conv1d | nn.Conv2d, a: torch.Tensor,
                            backprops: torch.Tensor) -> torch.Tensor:
    """(N, *weight.shape): the batch folded into the channels as N x groups convolution
    groups, so one call of the convolution's own weight-gradient kernel gives every example's
    gradient (faster than unfold + batched matmul on CPU, measured)."""
    n = a.shape[0]
    x, padding = padded(layer, a)
    shape = (n * layer.out_channels, *layer.weight.shape[1:])
    # the kernel reads only the weight's shape when computing the weight gradient: on CPU a
    # stride-0 stand-in spares a copy of the weights per example (same result, tested)
    weight = (layer.weight.new_empty(()).expand(shape) if a.device.type == "cpu"
              else layer.weight.detach().repeat(n, *(1,) * (layer.weight.dim() - 1)))
    _, grads, _ = torch.ops.aten.convolution_backward(
        backprops.reshape(1, -1, *backprops.shape[2:]), x.reshape(1, -1, *x.shape[2:]),
        weight, None, list(layer.stride), list(padding), list(layer.dilation), False,
        [0] * len(layer.kernel_size), n * layer.groups, [False, True, False])
    return grads.view(n, *layer.weight.shape)


def conv_norm_sample(layer: nn.Conv1d | nn.Conv2d, activations: list[torch.Tensor],
                     backprops: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """Norm sampler for ``nn.Conv1d`` / ``nn.Conv2d`` (mixed ghost / instantiated)."""
    a = activations[0].to(backprops.dtype)
    norms = {}
    if layer.weight.requires_grad:
        norms[layer.weight] = (conv_weight_norms(layer, a, backprops) if len(a)
                               else a.new_zeros(0))
    if layer.bias is not None and layer.bias.requires_grad:
        norms[layer.bias] = backprops.flatten(2).sum(dim=-1).norm(dim=1)
    return norms


def conv_grad_sample(layer: nn.Conv1d | nn.Conv2d, activations: list[torch.Tensor],
                     backprops: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """Per-sample gradients of a convolution (grad-sampler signature), through
    :func:`per_sample_weight_grads`."""
    a = activations[0].to(backprops.dtype)
    samples = {}
    if layer.weight.requires_grad:
        samples[layer.weight] = per_sample_weight_grads(layer, a, backprops)
    if layer.bias is not None and layer.bias.requires_grad:
        samples[layer.bias] = backprops.flatten(2).sum(dim=-1)
    return samples


def instantiated_norms(layer: nn.Module, activations: list[torch.Tensor],
                       backprops: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """Norms of the per-sample gradients from Opacus' own grad sampler for the layer type:
    right for layers whose per-sample gradients are small (GroupNorm: 2 x C values)."""
    sampler = GradSampleModule.GRAD_SAMPLERS[type(layer)]
    return {p: gs.flatten(1).norm(dim=1)
            for p, gs in sampler(layer, activations, backprops).items()}


def linear_norm_sample(layer: nn.Linear, activations: list[torch.Tensor],
                       backprops: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """Norm sampler for ``nn.Linear``: for 2-D inputs example n's weight gradient is the
    outer product ``g_n a_n^T``, of norm ``|g_n| |a_n|``, taken by one reduction per
    operand (Opacus' rule computes the same with einsum, a batched matrix product of 1 x d
    by d x 1 that took 7x longer on a 2048 x 1568 input); other shapes: Opacus' rule."""
    if backprops.dim() != 2:
        return OPACUS_NORM_SAMPLERS[nn.Linear](layer, activations, backprops)
    g = torch.linalg.vector_norm(backprops, dim=1)
    norms = {}
    if layer.weight.requires_grad:
        a = activations[0].to(backprops.dtype)
        norms[layer.weight] = g * torch.linalg.vector_norm(a.flatten(1), dim=1)
    if layer.bias is not None and layer.bias.requires_grad:
        norms[layer.bias] = g
    return norms


NORM_SAMPLERS: dict[type[nn.Module], Rule] = {
    nn.Linear: linear_norm_sample, nn.Conv1d: conv_norm_sample, nn.Conv2d: conv_norm_sample,
    nn.GroupNorm: instantiated_norms}


class MixedGhostModule(GradSampleModuleFastGradientClipping):
    """``ghost_mixed``: Opacus' ghost clipping module (two backward passes) with
    :data:`NORM_SAMPLERS` added to its norm-sampler table, so convolutions and GroupNorm get
    their norms without instantiating their per-sample gradients (Opacus 1.6 does)."""

    NORM_SAMPLERS = {**GradSampleModuleFastGradientClipping.NORM_SAMPLERS, **NORM_SAMPLERS}
