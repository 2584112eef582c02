"""Shared fixtures: tiny models on generated or embedded data, trained in plain torch.

These fixtures deliberately avoid robustlr so that the `attacks` and `privacy` tests stay
independent of it, as those packages are.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from sklearn.datasets import load_digits
from torch import nn

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits_tensors():
    """Digits as (x_train, y_train, x_test, y_test): 1x8x8 floats in [0, 1], int64 labels."""
    bunch = load_digits()
    x = torch.tensor(bunch.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(y)))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def train_plain(model: nn.Module, x, y, *, epochs: int = 15, lr: float = 0.05, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=generator).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="session")
def digits_cnn(digits_tensors):
    """A small CNN trained on digits (about 97% test accuracy), in eval mode."""
    torch.manual_seed(0)
    x_train, y_train, _, _ = digits_tensors
    return train_plain(small_cnn(), x_train, y_train)


# Property tests run beside other processes on 2 cores: a slow example is the machine's load,
# not a bug, so only the per-test deadlines the tests set themselves apply.
settings.register_profile("shared-cores", suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared-cores")
