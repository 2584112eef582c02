"""Training-time augmentation, in the spec grammar: ``data.augment: ["random_crop(padding=4)",
hflip, "cutout(size=8)"]`` (applied in that order; evaluation never augments).

In-memory data is augmented on the device, one batch at a time, with random numbers drawn
from the trial's data generator (the one that orders the batches), so a seed fixes every
augmented batch. Streamed data is augmented per example in the DataLoader's workers through
the torchvision.transforms.v2 equivalents (see :mod:`robustlr.data.streaming` for their seeding).
Every operation keeps inputs in [0, 1] and their shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.nn import functional as F  # noqa: N812

from robustlr.spec import Registry

AUGMENTS = Registry("augment")


def _image(name: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"{name} needs image inputs (C, H, W); the data has inputs of shape "
                         f"{tuple(input_shape)}")
    return tuple(input_shape)  # type: ignore[return-value]


def _uniform_ints(high: int, n: int, generator: torch.Generator, device) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=generator).to(device, non_blocking=True)


@AUGMENTS.register("random_crop")
class RandomCrop:
    """Zero-pad each side by ``padding`` pixels and crop back to the input size at a uniform
    random offset (the CIFAR recipe of He et al. 2016 and Rice et al. 2020: padding 4)."""

    def __init__(self, *, padding: int = 4):
        if padding < 1:
            raise ValueError(f"parameter 'padding' must be a positive integer, got {padding}")
        self.padding = padding

    def check(self, input_shape: Sequence[int]) -> None:
        _, height, width = _image("random_crop", input_shape)
        if self.padding >= min(height, width):
            raise ValueError(f"random_crop: padding {self.padding} must be below the image size "
                             f"{height}x{width}")

    def batch(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, channels, height, width = x.shape
        p = self.padding
        padded = F.pad(x, (p, p, p, p))
        top = _uniform_ints(2 * p + 1, n, generator, x.device)
        left = _uniform_ints(2 * p + 1, n, generator, x.device)
        rows = top[:, None] + torch.arange(height, device=x.device)
        cols = left[:, None] + torch.arange(width, device=x.device)
        index = (rows[:, :, None] * (width + 2 * p) + cols[:, None, :]).view(n, 1, height * width)
        return padded.flatten(2).gather(2, index.expand(n, channels, -1)).view_as(x)

    def item(self, input_shape: Sequence[int]) -> Any:
        from torchvision.transforms import v2

        return v2.RandomCrop(tuple(input_shape[1:]), padding=self.padding)


@AUGMENTS.register("hflip")
class HorizontalFlip:
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, *, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"parameter 'p' must be in [0, 1], got {p}")
        self.p = p

    def check(self, input_shape: Sequence[int]) -> None:
        _image("hflip", input_shape)

    def batch(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flip = (torch.rand(len(x), generator=generator) < self.p).to(x.device, non_blocking=True)
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)

    def item(self, input_shape: Sequence[int]) -> Any:
        from torchvision.transforms import v2

        return v2.RandomHorizontalFlip(self.p)


class _CutoutItem:
    """Cutout on one (C, H, W) tensor, with torch's global generator (seeded per worker)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _, height, width = x.shape
        cy, cx = int(torch.randint(0, height, ())), int(torch.randint(0, width, ()))
        half = self.size // 2
        out = x.clone()
        out[:, max(cy - half, 0):cy - half + self.size, max(cx - half, 0):cx - half + self.size] = 0.0
        return out


@AUGMENTS.register("cutout")
class Cutout:
    """Zero a ``size`` x ``size`` square centred at a uniform random pixel, clipped at the
    border (DeVries & Taylor, 2017, arXiv:1708.04552; 16 for CIFAR-10 in the paper)."""

    def __init__(self, *, size: int = 8):
        if size < 1:
            raise ValueError(f"parameter 'size' must be a positive integer, got {size}")
        self.size = size

    def check(self, input_shape: Sequence[int]) -> None:
        _, height, width = _image("cutout", input_shape)
        if self.size > min(height, width):
            raise ValueError(f"cutout: size {self.size} is larger than the image ({height}x{width})")

    def batch(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, height, width = x.shape
        half = self.size // 2
        top = _uniform_ints(height, n, generator, x.device)[:, None] - half
        left = _uniform_ints(width, n, generator, x.device)[:, None] - half
        rows = torch.arange(height, device=x.device)[None, :]
        cols = torch.arange(width, device=x.device)[None, :]
        inside_rows = (rows >= top) & (rows < top + self.size)
        inside_cols = (cols >= left) & (cols < left + self.size)
        hole = inside_rows[:, :, None] & inside_cols[:, None, :]
        return x.masked_fill(hole[:, None], 0.0)

    def item(self, input_shape: Sequence[int]) -> Any:
        return _CutoutItem(self.size)


class Augmentation:
    """The configured operations, in order, checked against the data's input shape."""

    def __init__(self, operations: Sequence[Any], input_shape: Sequence[int]):
        self.operations = list(operations)
        self.input_shape = tuple(input_shape)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for operation in self.operations:
            x = operation.batch(x, generator)
        return x

    def items(self) -> Any:
        """The same operations for one example at a time (torchvision.transforms.v2)."""
        from torchvision.transforms import v2

        return v2.Compose([operation.item(self.input_shape) for operation in self.operations])


def build(specs: Iterable[Any], *, input_shape: Sequence[int]) -> Augmentation | None:
    """The pipeline ``specs`` names (None when empty); a spec that does not fit the input
    shape raises ValueError naming ``data.augment[i]``."""
    operations = []
    for index, spec in enumerate(specs):
        operation = AUGMENTS.build(spec)
        try:
            operation.check(input_shape)
        except ValueError as error:
            raise ValueError(f"data.augment[{index}]: {error}") from None
        operations.append(operation)
    return Augmentation(operations, input_shape) if operations else None


class AugmentedBatches:
    """Batches of ``loader``, each augmented on its device (see the module doc). ``views`` > 1
    (DP augmentation multiplicity): each example comes ``views`` times in a row, each copy
    augmented independently, so rows ``i * views ... (i + 1) * views - 1`` are example i."""

    def __init__(self, loader: Any, augmentation: Augmentation, generator: torch.Generator,
                 views: int = 1):
        self.loader, self.augmentation, self.generator = loader, augmentation, generator
        self.views = views

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            if self.views > 1:
                x, y = x.repeat_interleave(self.views, 0), y.repeat_interleave(self.views, 0)
            yield self.augmentation(x, self.generator), y
