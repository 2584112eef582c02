"""Building blocks shared by the architectures: input normalization, norm layers, the head.

Every model is a :class:`Classifier`: ``Normalize`` first (inputs arrive in [0, 1], so attack
budgets stay in input space), then a feature trunk, then ``head``, an ``nn.Linear`` producing
logits. Poison filters read penultimate features by hooking the input of ``model.head``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

NORMS = ("batch", "group", "none")


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; mean and std are buffers, saved with the state dict."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std) or len(mean) == 0:
            raise ValueError(f"mean and std need one value per channel, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]))
        self.register_buffer("std", torch.tensor([float(s) for s in std]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        return (x - mean.view(shape)) / std.view(shape)

    def extra_repr(self) -> str:
        return f"channels={self.get_buffer('mean').numel()}"


class Classifier(nn.Module):
    """``head(features(normalize(x)))``: [0, 1] inputs -> logits of shape (N, num_classes)."""

    def __init__(self, normalize: Normalize, features: nn.Module, head: nn.Linear):
        super().__init__()
        self.normalize = normalize
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.normalize(x)))


def check_norm(norm: str | None) -> str:
    """The norm name; the spec grammar reads a bare ``none`` as None, which means "none"."""
    norm = "none" if norm is None else norm
    if norm not in NORMS:
        raise ValueError(f"parameter 'norm' must be one of {', '.join(NORMS)}; got {norm!r}")
    return norm


def check_positive(name: str, value: int) -> int:
    if value < 1:
        raise ValueError(f"parameter '{name}' must be a positive integer, got {value}")
    return value


def group_count(channels: int) -> int:
    """Groups for GroupNorm: the largest divisor of ``channels`` not above min(16, channels // 4)."""
    cap = max(1, min(16, channels // 4))
    return max(d for d in range(1, cap + 1) if channels % d == 0)


def norm_layer(norm: str, channels: int, *, dims: int) -> nn.Module:
    """A norm layer for ``dims``-D feature maps (0 = flat features); ``group`` is Opacus-trainable."""
    if norm == "batch":
        return (nn.BatchNorm1d if dims <= 1 else nn.BatchNorm2d)(channels)
    if norm == "group":
        return nn.GroupNorm(group_count(channels), channels)
    return nn.Identity()


def feature_size(trunk: nn.Module, input_shape: Sequence[int]) -> int:
    """Flattened output size of ``trunk`` for one input of ``input_shape`` (a dry run)."""
    was_training = trunk.training
    trunk.eval()
    with torch.no_grad():
        out = trunk(torch.zeros(1, *input_shape))
    trunk.train(was_training)
    return out.flatten(1).shape[1]
