"""The ghost (Gram) norm of a convolution from the Gram matrix of its input pixels.

The Gram form of :mod:`.ghost_norms` needs the patch products ``a_t . a_t'`` of every pair of
output positions. Unfolding the patches copies the input ``prod(kernel)`` times and then
multiplies vectors ``prod(kernel)`` times longer. But a patch is the input pixels at the
kernel offsets ``k`` from its origin, so

    a_t . a_t' = sum_k x[o(t) + k] . x[o(t') + k] = sum_k G[o(t) + k, o(t') + k]

with ``G`` the Gram matrix of the (zero-padded) input's pixels over the group's channels:
one ``P x P`` product per example instead of ``T x T`` over patches ``prod(kernel)`` times
longer, then a gather. For stride 1 (P close to T) that is several times cheaper; strided
convolutions (P about stride^2 T) keep the unfolded form: :func:`cheaper` decides by the
count of multiply-adds.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn


def _sizes(layer: nn.Conv1d | nn.Conv2d, x: torch.Tensor, backprops: torch.Tensor,
           padding: tuple) -> tuple[tuple, tuple, tuple, tuple, tuple]:
    return (tuple(s + 2 * p for s, p in zip(x.shape[2:], padding)), tuple(backprops.shape[2:]),
            tuple(layer.kernel_size), tuple(layer.stride), tuple(layer.dilation))


def cheaper(layer: nn.Conv1d | nn.Conv2d, x: torch.Tensor, backprops: torch.Tensor,
            padding: tuple) -> bool:
    """True when the pixel Gram form needs fewer multiply-adds than the unfolded one
    (per example and group; ``x`` after :func:`~.ghost_norms.padded`)."""
    padded, out, kernel = _sizes(layer, x, backprops, padding)[:3]
    pixels, positions, offsets = math.prod(padded), math.prod(out), math.prod(kernel)
    channels = layer.in_channels // layer.groups
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


def squared_norms(layer: nn.Conv1d | nn.Conv2d, x: torch.Tensor, backprops: torch.Tensor,
                  padding: tuple) -> torch.Tensor:
    """Per-example squared norms of the weight gradient, (N,); ``x`` and ``padding`` from
    :func:`~.ghost_norms.padded` (zero padding still to apply)."""
    sizes = _sizes(layer, x, backprops, padding)
    n, groups, positions = len(x), layer.groups, math.prod(sizes[1])
    pad = [p for p in reversed(padding) for _ in range(2)]
    pixels = F.pad(x, pad).reshape(n, groups, layer.in_channels // groups, -1)
    # batch last (a copy: the permuted view alone would gather single values at stride P^2),
    # so the gather below copies runs of N x groups contiguous values
    gram_x = (pixels.transpose(-1, -2) @ pixels).permute(2, 3, 1, 0).reshape(-1, groups * n)
    patches = gram_x.contiguous().index_select(0, _pair_index(*sizes))
    patches = patches.view(-1, positions * positions, groups * n).sum(dim=0)
    grads = backprops.reshape(n, groups, -1, positions)
    gram_g = (grads.transpose(-1, -2) @ grads).permute(2, 3, 1, 0)  # (T, T, groups, N)
    return (patches * gram_g.reshape(-1, groups * n)).sum(dim=0).view(groups, n).sum(dim=0)
