"""Madry et al. 2018's MNIST network (the MNIST challenge's), as a user model factory robustlr
loads by import path (``model: {name: "madry_models:mnist_challenge_net", normalize: false}``;
``robustlr reproduce`` puts this folder on the import path).

Layers and initialisation from github.com/MadryLab/mnist_challenge (commit 3ee3643), model.py
lines 18-43 and 57-79: conv 5x5 with 32 filters ("SAME" padding), ReLU, max-pool 2x2;
conv 5x5 with 64 filters, ReLU, max-pool 2x2; fully connected 7*7*64 -> 1024, ReLU;
1024 -> 10. Weights from a normal truncated at two standard deviations (std 0.1), biases 0.1.
3,274,634 parameters. Pixels in [0, 1], no normalization (the challenge's eps 0.3 is in that
space).
"""

from __future__ import annotations

from torch import nn


def mnist_challenge_net(num_classes: int = 10) -> nn.Sequential:
    model = nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(7 * 7 * 64, 1024), nn.ReLU(),
        nn.Linear(1024, num_classes))
    for layer in model:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(layer.weight, std=0.1, a=-0.2, b=0.2)
            nn.init.constant_(layer.bias, 0.1)
    return model

