"""The ghost (Gram) norm of a convolution from the Gram matrix of its input pixels.

The Gram form of :mod:`.ghost_norms` needs the patch products ``a_t . a_t'`` of every pair of
output positions. Unfolding the patches copies the input ``prod(kernel)`` times and then
multiplies vectors ``prod(kernel)`` times longer. But a patch is the input pixels at the
kernel offsets ``k`` from its origin, so

    a_t . a_t' = sum_k x[o(t) + k] . x[o(t') + k] = sum_k G[o(t) + k, o(t') + k]

with ``G`` the Gram matrix of the zero-padded input's pixels over the group's channels:
one ``P x P`` product per example instead of ``T x T`` over patches ``prod(kernel)`` times
longer, then a gather. A padding pixel is zero, so ``G`` is the unpadded pixels' Gram (R x R)
plus one zero row and column that every padding position maps to; the sum over offsets of
the gathered entries is one ``embedding_bag`` (the gather is never materialised). For
stride 1 (R close to T) that is several times cheaper; strided convolutions (R about
stride^2 T) keep the unfolded form: :func:`cheaper` decides by the count of multiply-adds.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn


def cheaper(layer: nn.Conv1d | nn.Conv2d, x: torch.Tensor, backprops: torch.Tensor,
            padding: tuple) -> bool:
    """True when the pixel Gram form needs fewer multiply-adds than the unfolded one
    (per example and group; ``x`` after :func:`~.ghost_norms.padded`): the Gram of the
    unpadded pixels plus the sums over kernel offsets, against the patches' Gram."""
    pixels, positions = math.prod(x.shape[2:]), backprops[0, 0].numel()
    offsets, channels = math.prod(layer.kernel_size), layer.in_channels // layer.groups
    return (channels * pixels ** 2 + offsets * positions ** 2
            < channels * offsets * positions * (positions + 1))


@lru_cache(maxsize=32)
def _pair_index(padded: tuple, out: tuple, kernel: tuple, stride: tuple,
                dilation: tuple) -> torch.Tensor:
    """Flat indices into the P x P pixel Gram matrix of (o(t) + k, o(t') + k), shape
    (offsets * T * T,) ordered by offset, then t, then t'."""
    index = torch.zeros((1, 1), dtype=torch.int64)  # (offsets so far, positions so far)
    for size, n_out, k, s, d in zip(padded, out, kernel, stride, dilation):
        along = (torch.arange(k) * d)[:, None] + (torch.arange(n_out) * s)[None, :]  # (k, out)
        index = (index[:, None, :, None] * size + along[None, :, None, :]).flatten(2)
        index = index.flatten(0, 1)
    pixels = math.prod(padded)
    return (index[:, :, None] * pixels + index[:, None, :]).flatten()


@lru_cache(maxsize=32)
def _bag_index(raw: tuple, padding: tuple, out: tuple, kernel: tuple, stride: tuple,
               dilation: tuple, device: torch.device) -> torch.Tensor:
    """(T * T, offsets): for each pair of output positions, the rows of the unpadded pixel
    Gram matrix, extended by one zero row and column, to sum over the kernel offsets. A
    padding pixel is zero, so every product with it is the zero slot (index R)."""
    padded = tuple(s + 2 * p for s, p in zip(raw, padding))
    inside = torch.zeros((), dtype=torch.bool)  # over the padded grid, built one axis at a time
    raw_index = torch.zeros((), dtype=torch.int64)
    for size, pad in zip(raw, padding):
        along = torch.arange(size + 2 * pad) - pad
        valid = (along >= 0) & (along < size)
        inside = (inside[..., None] & valid).reshape(-1) if inside.dim() else valid
        raw_index = ((raw_index[..., None] * size + along.clamp(0, size - 1)).reshape(-1)
                     if raw_index.dim() else along.clamp(0, size - 1))
    pixels = math.prod(raw)
    to_raw = torch.where(inside, raw_index, pixels)  # padded pixel -> raw pixel, or the zero slot
    pair = _pair_index(padded, out, kernel, stride, dilation)
    grid = math.prod(padded)
    rows = to_raw[pair // grid] * (pixels + 1) + to_raw[pair % grid]
    # on the Gram matrix's device: embedding_bag takes its indices from the same device
    return rows.view(math.prod(kernel), -1).t().contiguous().to(device)


def squared_norms(layer: nn.Conv1d | nn.Conv2d, x: torch.Tensor, backprops: torch.Tensor,
                  padding: tuple) -> torch.Tensor:
    """Per-example squared norms of the weight gradient, (N,); ``x`` and ``padding`` from
    :func:`~.ghost_norms.padded` (zero padding still to apply)."""
    n, groups, positions = len(x), layer.groups, backprops[0, 0].numel()
    raw = tuple(x.shape[2:])
    pixels = math.prod(raw)
    flat = x.reshape(n, groups, layer.in_channels // groups, pixels)
    # the Gram of the unpadded pixels, batch last (rows of N x groups contiguous values) with
    # a zero row and column for the padding; padding pixels never enter the product
    gram_x = flat.new_zeros(pixels + 1, pixels + 1, groups, n)
    gram_x[:pixels, :pixels] = (flat.transpose(-1, -2) @ flat).permute(2, 3, 1, 0)
    index = _bag_index(raw, tuple(padding), tuple(backprops.shape[2:]), tuple(layer.kernel_size),
                       tuple(layer.stride), tuple(layer.dilation), x.device)
    # sum over the kernel offsets of the gathered rows, without materialising the gather
    patches = F.embedding_bag(index, gram_x.view(-1, groups * n), mode="sum")  # (T*T, G*N)
    grads = backprops.reshape(n, groups, -1, positions)
    gram_g = (grads.transpose(-1, -2) @ grads).permute(2, 3, 1, 0)  # (T, T, groups, N)
    return (patches * gram_g.reshape(-1, groups * n)).sum(dim=0).view(groups, n).sum(dim=0)
