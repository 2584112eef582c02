"""Multi-layer perceptron on flattened inputs (any input shape)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from robustlr.models.layers import check_norm, check_positive, norm_layer
from robustlr.models.registry import MODELS


@MODELS.register("mlp")
def mlp(*, input_shape: Sequence[int], hidden: tuple[int, ...] = (256, 128),
        norm: str | None = "none") -> tuple[nn.Module, int]:
    """Flatten, then Linear -> norm -> ReLU for each hidden size.

    ``hidden=[]`` gives a linear (softmax-regression) model.
    """
    norm = check_norm(norm)
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for size in hidden:
        check_positive("hidden", size)
        layers += [nn.Linear(width, size), norm_layer(norm, size, dims=0), nn.ReLU()]
        width = size
    return nn.Sequential(*layers), width
