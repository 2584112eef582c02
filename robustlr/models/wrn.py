"""Wide residual networks (Zagoruyko & Komodakis, 2016, arXiv:1605.07146): WRN-28-10 and the
WRN-34-10 of Madry et al. (2018, arXiv:1706.06083) and TRADES.

``depth = 6n + 4``: a 3x3 stem of 16 channels, then three groups of ``n`` pre-activation
blocks of 16k, 32k and 64k channels (k = ``width``; strides 1, 2, 2), a last norm + ReLU and
global average pooling: 64k features into the head. A block is norm -> ReLU -> conv ->
norm -> ReLU -> (dropout) -> conv; when the shape changes, a 1x1 projection of the
pre-activated input joins the residual. No in-place operations (Opacus hooks, ``norm=group``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from robustlr.models.layers import check_norm, check_positive, norm_layer
from robustlr.models.preact import PreActBlock, conv3x3
from robustlr.models.registry import MODELS


@MODELS.register("wrn")
def wrn(*, input_shape: Sequence[int], depth: int = 28, width: int = 10, dropout: float = 0.0,
        norm: str | None = "batch") -> tuple[nn.Module, int]:
    """WideResNet-``depth``-``width`` (28-10 by default; 34-10 is Madry et al.'s)."""
    if len(input_shape) != 3:
        raise ValueError(f"needs image (C, H, W) inputs, got input_shape {tuple(input_shape)}")
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"parameter 'depth' must be 6n + 4 (10, 16, 22, 28, 34, 40, ...), got {depth}")
    check_positive("width", width)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"parameter 'dropout' must be in [0, 1), got {dropout}")
    norm = check_norm(norm)
    blocks = (depth - 4) // 6
    layers: list[nn.Module] = [conv3x3(input_shape[0], 16)]
    inputs = 16
    for outputs, stride in ((16 * width, 1), (32 * width, 2), (64 * width, 2)):
        for index in range(blocks):
            layers.append(PreActBlock(inputs, outputs, stride if index == 0 else 1, norm, dropout))
            inputs = outputs
    layers += [norm_layer(norm, inputs, dims=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    trunk = nn.Sequential(*layers)
    for module in trunk.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return trunk, inputs
