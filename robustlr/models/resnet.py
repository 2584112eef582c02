"""ResNet-18 (He et al., 2016, arXiv:1512.03385) for small images.

torchvision's ResNet with the CIFAR stem: a 3x3 stride-1 first conv and no max-pool. Blocks
use no in-place operations (no ``ReLU(inplace=True)``, no ``out += identity``) so that the
``norm="group"`` variant trains under Opacus' backward hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from robustlr.models.layers import check_norm, norm_layer
from robustlr.models.registry import MODELS


class _Block(BasicBlock):
    """torchvision's BasicBlock without in-place operations."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


@MODELS.register("resnet18")
def resnet18(*, input_shape: Sequence[int], norm: str | None = "batch") -> tuple[nn.Module, int]:
    """ResNet-18 with a 3x3 stride-1 stem and no max-pool; 512 features into the head."""
    if len(input_shape) != 3:
        raise ValueError(f"needs image (C, H, W) inputs, got input_shape {tuple(input_shape)}")
    norm = check_norm(norm)
    trunk = ResNet(_Block, [2, 2, 2, 2], norm_layer=partial(norm_layer, norm, dims=2))
    trunk.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(trunk.conv1.weight, mode="fan_out", nonlinearity="relu")
    trunk.relu = nn.ReLU()
    trunk.maxpool = nn.Identity()
    trunk.fc = nn.Identity()
    return trunk, 512 * _Block.expansion
