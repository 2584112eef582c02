"""Small networks users bring, as factories a robustlr spec names (``"user_models:tanh_cnn"``).

Both are written from the authors' repositories, layer for layer:
- :func:`tanh_cnn`: Tramer & Boneh 2021 ("Differentially Private Learning Needs Better
  Features"), the end-to-end MNIST CNN, ``MNIST_CNN`` in ``models.py`` of
  github.com/ftramer/Handcrafted-DP (cfg ``[(16, 8, 2, 2), 'M', (32, 4, 2, 0), 'M']``: conv
  16 8x8 stride 2 padding 2, tanh, max-pool 2 stride 1, conv 32 4x4 stride 2, tanh, max-pool
  2 stride 1, linear 512 -> 32, tanh, linear 32 -> 10); 26,010 parameters.
- :func:`relu_mnist`: Wong, Rice & Kolter 2020 ("Fast is better than free"), ``mnist_net``
  in ``MNIST/mnist_net.py`` of github.com/locuslab/fast_adversarial (two 4x4 stride-2
  convolutions with ReLU, then linear 1568 -> 100 -> 10); 166,406 parameters.
"""

from __future__ import annotations

from torch import nn


def tanh_cnn(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 8, stride=2, padding=2), nn.Tanh(), nn.MaxPool2d(2, stride=1),
        nn.Conv2d(16, 32, 4, stride=2), nn.Tanh(), nn.MaxPool2d(2, stride=1),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 32), nn.Tanh(), nn.Linear(32, num_classes))


def relu_mnist(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, num_classes))
