"""Small convolutional networks: ``cnn`` for small images, ``cnn1d`` for MNIST-1D signals."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from robustlr.models.layers import check_norm, check_positive, feature_size, norm_layer
from robustlr.models.registry import MODELS


def _needs(input_shape: Sequence[int], dims: int, what: str) -> None:
    if len(input_shape) != dims + 1:
        raise ValueError(f"needs {what} inputs, got input_shape {tuple(input_shape)}")


@MODELS.register("cnn")
def cnn(*, input_shape: Sequence[int], width: int = 32, hidden: int = 128,
        norm: str | None = "batch") -> tuple[nn.Module, int]:
    """Two 3x3 conv blocks (``width`` and ``2*width`` channels, each conv -> norm -> ReLU ->
    2x2 max-pool), then a ``hidden``-unit ReLU layer. Works from 8x8 (digits) to 32x32 images.
    """
    _needs(input_shape, 2, "image (C, H, W)")
    norm = check_norm(norm)
    check_positive("width", width)
    check_positive("hidden", hidden)
    channels = input_shape[0]
    convs = nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), norm_layer(norm, width, dims=2), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), norm_layer(norm, 2 * width, dims=2), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    flat = feature_size(convs, input_shape)
    return nn.Sequential(convs, nn.Linear(flat, hidden), nn.ReLU()), hidden


@MODELS.register("cnn1d")
def cnn1d(*, input_shape: Sequence[int], width: int = 25,
          norm: str | None = "none") -> tuple[nn.Module, int]:
    """The MNIST-1D authors' ConvBase (Greydanus & Kobak, 2020, arXiv:2011.14439).

    Three 1-D convs of ``width`` channels (kernel 5, then 3 and 3; stride 2, padding 1), each
    followed by norm and ReLU, flattened into the linear head: about 5,200 parameters for
    1x40 inputs at the default width and no norm.
    """
    _needs(input_shape, 1, "signal (C, L)")
    norm = check_norm(norm)
    check_positive("width", width)
    layers: list[nn.Module] = []
    channels = input_shape[0]
    for kernel in (5, 3, 3):
        layers += [nn.Conv1d(channels, width, kernel, stride=2, padding=1),
                   norm_layer(norm, width, dims=1), nn.ReLU()]
        channels = width
    trunk = nn.Sequential(*layers, nn.Flatten())
    return trunk, feature_size(trunk, input_shape)
