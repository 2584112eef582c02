"""Common corruptions generated on the fly, in the spirit of CIFAR-10-C.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019, https://arxiv.org/abs/1903.12261. Four corruptions at three
severities each, on tensors in [0, 1] shaped (N, C, H, W) images or (N, C, L) signals
(MNIST-1D); blur runs along the spatial (last) dimensions. The severity levels are our own,
chosen to span mild to strong on small inputs — they are not the published CIFAR-10-C files.

Example::

    corruption_accuracy(model, x, y)  # {"gaussian_noise_s1": 0.95, ..., "mean": 0.81}
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_choice, check_int, eval_mode, model_device

Corruption = Callable[[torch.Tensor, float, "torch.Generator | None"], torch.Tensor]


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
    return x + std * noise.to(x.device)


def gaussian_blur(x: torch.Tensor, sigma: float, generator: torch.Generator | None) -> torch.Tensor:
    """Separable gaussian blur along every dimension after the channel one."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    out = x
    for dim in range(2, x.dim()):
        moved = out.movedim(dim, -1)
        flat = moved.reshape(-1, 1, moved.shape[-1])
        # replicate padding works for any length, even when the kernel is longer than it
        blurred = F.conv1d(F.pad(flat, (radius, radius), mode="replicate"), kernel)
        out = blurred.reshape(moved.shape).movedim(-1, dim)
    return out


def contrast(x: torch.Tensor, factor: float, generator: torch.Generator | None) -> torch.Tensor:
    """Pull each example's channels toward their own mean, as CIFAR-10-C does."""
    mean = x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
    return (x - mean) * factor + mean


def brightness(x: torch.Tensor, shift: float, generator: torch.Generator | None) -> torch.Tensor:
    """Add a constant (CIFAR-10-C shifts the HSV value channel; on grey inputs this is it)."""
    return x + shift


CORRUPTIONS: dict[str, tuple[Corruption, tuple[float, float, float]]] = {
    "gaussian_noise": (gaussian_noise, (0.08, 0.16, 0.28)),  # noise std
    "gaussian_blur": (gaussian_blur, (0.5, 1.0, 1.5)),  # sigma in pixels (or samples)
    "contrast": (contrast, (0.5, 0.3, 0.15)),  # factor kept of the deviation from the mean
    "brightness": (brightness, (0.1, 0.25, 0.4)),  # added to every value
}


def corrupt(x: torch.Tensor, name: str, severity: int, *,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` under corruption ``name`` at ``severity`` in {1, 2, 3}, clipped to [0, 1]."""
    check_choice("name", name, tuple(CORRUPTIONS))
    check_choice("severity", severity, (1, 2, 3))
    if x.dim() < 3:
        raise ValueError(f"x must be (N, C, L) or (N, C, H, W), got shape {tuple(x.shape)}")
    function, levels = CORRUPTIONS[name]
    return function(x, levels[severity - 1], generator).clamp(0.0, 1.0)


def corruption_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                        generator: torch.Generator | None = None,
                        batch_size: int = 500) -> dict[str, float]:
    """Accuracy under every corruption and severity (``gaussian_noise_s1`` ...) and ``mean``.

    The model runs in eval mode and its modes are restored; ``generator`` seeds the noise.
    """
    check_int("batch_size", batch_size, low=1)
    device = model_device(model, x.device)
    results: dict[str, float] = {}
    with eval_mode(model), torch.no_grad():
        for name in CORRUPTIONS:
            for severity in (1, 2, 3):
                hits = 0
                for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
                    xb = corrupt(xb.to(device), name, severity, generator=generator)
                    hits += int((model(xb).argmax(1) == yb.to(device)).sum())
                results[f"{name}_s{severity}"] = hits / max(1, len(y))
    results["mean"] = sum(results.values()) / len(results)
    return results
