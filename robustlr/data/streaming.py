"""Training data that does not fit the in-memory path: examples stream through a DataLoader.

Order and randomness (documented in the README):
- the batch order of every epoch comes from the DataLoader's sampler, seeded by the trial's
  data generator (``torch.Generator().manual_seed(seed)``), so a seed fixes the order;
- workers draw augmentation randomness from torch's generator, which the DataLoader seeds
  per worker as ``base_seed + worker_id`` with ``base_seed`` drawn from the same data
  generator; the result is reproducible for a given seed *and* ``data.workers``
  (persistent workers keep their generators across epochs). With ``workers: 0`` the main
  process's generator, seeded with the trial seed, draws it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def to_tensor(x: Any) -> torch.Tensor:
    """One input as float32 in [0, 1]: uint8 tensors and images are scaled by 1/255; PIL
    images and (H, W, C) arrays become (C, H, W)."""
    if isinstance(x, np.ndarray) and x.ndim != 3:
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        from torchvision.transforms.v2 import functional

        x = functional.to_image(x).as_subclass(torch.Tensor)
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise TypeError(f"inputs must be uint8 or floating point, got {x.dtype}")
    return x.float()


class Examples(Dataset):
    """``base``'s examples as (float tensor in [0, 1], int label), optionally transformed."""

    def __init__(self, base: Any, indices: np.ndarray | None = None, transform: Any = None):
        self.base, self.indices, self.transform = base, indices, transform

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x, y = self.base[int(self.indices[index]) if self.indices is not None else index]
        x = to_tensor(x)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(y)

    def with_transform(self, transform: Any) -> Examples:
        return Examples(self.base, self.indices, transform)


class Arrays(Dataset):
    """Items of in-memory arrays (what a source returns), for streaming them."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.x[index]), int(self.y[index])


def materialize(dataset: Dataset, *, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Every example of ``dataset`` (an :class:`Examples`) as (x, y) tensors, in order."""
    xs, ys = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        xs.append(x)
        ys.append(y)
    if not xs:
        raise ValueError("the dataset is empty")
    return torch.cat(xs), torch.cat(ys).long()


class DeviceLoader:
    """A DataLoader's batches moved to ``device`` (asynchronously from pinned memory)."""

    def __init__(self, loader: DataLoader, device: torch.device):
        self.loader, self.device = loader, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def loader(dataset: Examples, *, batch_size: int, generator: torch.Generator,
           device: torch.device, workers: int, transform: Any = None) -> DeviceLoader:
    """Shuffled batches of ``dataset`` (see the module doc for the seeding)."""
    data = dataset.with_transform(transform) if transform is not None else dataset
    return DeviceLoader(DataLoader(
        data, batch_size=batch_size, shuffle=True, generator=generator, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None), device)
