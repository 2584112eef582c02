"""BadNets: a small patch trigger stamped on a fraction of the training set, relabelled.

Gu, Dolan-Gavitt & Garg, "BadNets: Identifying Vulnerabilities in the Machine Learning Model
Supply Chain", 2017, https://arxiv.org/abs/1708.06733.

The patch is opaque: every pixel in the ``size`` x ``size`` square is replaced by the pattern
(all channels), nothing outside it changes. For 1-D signals (N, C, L) the patch is the first
or last ``size`` samples (the horizontal half of ``position``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..contracts import POISONS
from .base import PoisonedData, check_choice, check_int, check_rate, dirty_label_backdoor

POSITIONS = ("bottom_right", "bottom_left", "top_right", "top_left")
PATTERNS = ("checker", "white")


def patch_pattern(pattern: str, size: int, dims: int) -> torch.Tensor:
    """The patch values: ones, or a checkerboard whose top-left (first) cell is 1."""
    grid = torch.arange(size)
    if dims == 1:
        cells = grid % 2 == 0
    else:
        cells = (grid[:, None] + grid[None, :]) % 2 == 0
    return torch.ones(cells.shape) if pattern == "white" else cells.float()


def stamp_patch(x: torch.Tensor, *, pattern: str, size: int, position: str) -> torch.Tensor:
    """``x`` with a ``size`` patch of ``pattern`` at ``position`` (images or 1-D signals)."""
    return stamp(x, patch_pattern(pattern, size, 1 if x.dim() == 3 else 2), position)


def stamp(x: torch.Tensor, values: torch.Tensor, position: str) -> torch.Tensor:
    """A copy of ``x`` with ``values`` written into the corner named by ``position``."""
    size = values.shape[-1]
    if size > min(x.shape[2:]):
        raise ValueError(f"size must be <= the input's spatial size {tuple(x.shape[2:])}, got {size}")
    vertical, horizontal = position.split("_")
    cols = slice(-size, None) if horizontal == "right" else slice(0, size)
    out = x.clone()
    if x.dim() == 3:
        out[..., cols] = values.to(x)
    else:
        rows = slice(-size, None) if vertical == "bottom" else slice(0, size)
        out[..., rows, cols] = values.to(x)
    return out


@POISONS.register("badnets")
@dataclass(frozen=True)
class BadNets:
    """Patch-trigger backdoor; ``rate`` is the poisoned fraction of the whole training set.

    Example: ``BadNets(rate=0.05, target=0).poison(x, y, num_classes=10, generator=g)``.
    """

    rate: float
    target: int = 0
    size: int = 3
    position: str = "bottom_right"
    pattern: str = "checker"

    def __post_init__(self) -> None:
        check_rate(self.rate)
        check_int("target", self.target, low=0)
        check_int("size", self.size, low=1)
        check_choice("position", self.position, POSITIONS)
        check_choice("pattern", self.pattern, PATTERNS)

    def apply_trigger(self, x: torch.Tensor) -> torch.Tensor:
        """The triggered copy of ``x`` (training poison and test-time attack alike)."""
        return stamp_patch(x, pattern=self.pattern, size=self.size, position=self.position)

    def poison(self, x: torch.Tensor, y: torch.Tensor, *, num_classes: int,
               generator: torch.Generator | None, model: torch.nn.Module | None = None,
               ) -> PoisonedData:
        """Poisoned copy of (x, y); ``model`` is unused (dirty-label attacks need none)."""
        return dirty_label_backdoor(self, x, y, num_classes=num_classes, generator=generator)
