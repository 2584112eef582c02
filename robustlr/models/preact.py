"""PreAct ResNet-18 (He et al., 2016, "Identity Mappings in Deep Residual Networks",
arXiv:1603.05027), the network of Rice, Wong & Kolter (2020, "Overfitting in adversarially
robust deep learning", arXiv:2002.11569) and most CIFAR-10 PGD-AT baselines since.

Each block normalizes and activates its input before each conv; a 1x1 projection of the
pre-activated input joins the residual when the shape changes. The trunk ends with a last
norm + ReLU, global average pooling and 512 features into the head. No in-place operations,
so the ``norm="group"`` variant trains under Opacus' backward hooks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robustlr.models.layers import check_norm, check_positive, norm_layer
from robustlr.models.registry import MODELS


def conv3x3(inputs: int, outputs: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)


class PreActBlock(nn.Module):
    """The pre-activation block of PreAct ResNets and WideResNets (the latter with dropout
    between the convolutions); no in-place operation, so Opacus' hooks accept it."""

    def __init__(self, inputs: int, outputs: int, stride: int, norm: str, dropout: float = 0.0):
        super().__init__()
        self.norm1 = norm_layer(norm, inputs, dims=2)
        self.conv1 = conv3x3(inputs, outputs, stride)
        self.norm2 = norm_layer(norm, outputs, dims=2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv3x3(outputs, outputs)
        self.relu = nn.ReLU()
        self.shortcut = (nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False)
                         if stride != 1 or inputs != outputs else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(self.relu(self.norm2(out))))
        return out + shortcut


@MODELS.register("preact_resnet18")
def preact_resnet18(*, input_shape: Sequence[int], norm: str | None = "batch",
                    width: int = 64) -> tuple[nn.Module, int]:
    """PreAct ResNet-18 for small images (3x3 stride-1 stem); ``8 x width`` (512) features into
    the head. ``width`` (64, the paper's) sets the four groups' channels, width to 8 x width: a
    smaller one keeps the architecture for smoke runs of a recipe on a CPU."""
    if len(input_shape) != 3:
        raise ValueError(f"needs image (C, H, W) inputs, got input_shape {tuple(input_shape)}")
    norm = check_norm(norm)
    check_positive("width", width)
    layers: list[nn.Module] = [conv3x3(input_shape[0], width)]
    inputs = width
    for outputs, stride in ((width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)):
        layers += [PreActBlock(inputs, outputs, stride, norm), PreActBlock(outputs, outputs, 1, norm)]
        inputs = outputs
    layers += [norm_layer(norm, inputs, dims=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), inputs
