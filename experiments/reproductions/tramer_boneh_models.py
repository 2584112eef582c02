"""Tramer & Boneh 2021's end-to-end MNIST CNN, as a user model factory robustlr loads by
import path (``model: {name: "tramer_boneh_models:mnist_cnn", normalize: false}``, with this
folder on PYTHONPATH; ``robustlr reproduce`` puts it there).

A user model, not a built-in, on purpose: the reproduction exercises the path a user's own
network takes (issue 22 asks DP to work and stay fast on models users bring), and a plug-in
can switch robustlr's input normalization off, as the authors' MNIST pipeline has none
(data.py: ``transforms.ToTensor()`` only, pixels in [0, 1]).

Layers from the authors' repository, ftramer/Handcrafted-DP, models.py ``MNIST_CNN`` with
``in_channels=1, size=None``: cfg ``[(16, 8, 2, 2), 'M', (32, 4, 2, 0), 'M']`` (filters,
kernel, stride, padding), each conv followed by tanh, ``'M'`` a MaxPool2d(kernel 2,
stride 1), then Linear(32*4*4, 32), tanh, Linear(32, 10): 26,010 parameters.
"""

from __future__ import annotations

from torch import nn


def mnist_cnn(num_classes: int = 10) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=8, stride=2, padding=2), nn.Tanh(),
        nn.MaxPool2d(kernel_size=2, stride=1),
        nn.Conv2d(16, 32, kernel_size=4, stride=2, padding=0), nn.Tanh(),
        nn.MaxPool2d(kernel_size=2, stride=1),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 32), nn.Tanh(),
        nn.Linear(32, num_classes))
