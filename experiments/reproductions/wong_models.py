"""Wong, Rice & Kolter 2020's MNIST network, as a user model factory robustlr loads by import
path (``model: {name: "wong_models:mnist_net", normalize: false}``, with this folder on
PYTHONPATH; ``robustlr reproduce`` puts it there).

A user model, not a built-in, so that the reproduction runs the path a user's own network
takes, and so that robustlr's input normalization can be switched off: the authors feed
pixels in [0, 1] (``transforms.ToTensor()`` only, MNIST/train_mnist.py line 46), and their
eps 0.3 is in that space.

Layers from github.com/locuslab/fast_adversarial (commit 54f7287), MNIST/mnist_net.py lines
8-19: Conv2d(1, 16, 4, stride 2, padding 1), ReLU, Conv2d(16, 32, 4, stride 2, padding 1),
ReLU, flatten, Linear(32*7*7, 100), ReLU, Linear(100, 10): 166,406 parameters.
"""

from __future__ import annotations

from torch import nn


def mnist_net(num_classes: int = 10) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 100), nn.ReLU(),
        nn.Linear(100, num_classes))
