"""Private helpers shared by the evasion attacks: validation, norms, projection, modes.

Everything here works on torch tensors in [0, 1] input space; nothing imports ART.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

NORMS = ("linf", "l2")


# --- validation: one-line ValueErrors that name the parameter and what is allowed -----------

def check_number(name: str, value: float, *, low: float = 0.0, strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < low or (strict and value == low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low:g}, got {value!r}")


def check_int(name: str, value: int, *, low: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")


def check_choice(name: str, value: object, allowed: Sequence[object]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")


def check_optional_number(name: str, value: float | None, *, strict: bool = False) -> None:
    if value is not None:
        check_number(name, value, strict=strict)


# --- geometry ------------------------------------------------------------------------------

def flat_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm, shaped to broadcast against ``t``."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project perturbations onto the eps-ball (exact for both norms)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    length = flat_norm(delta)
    # eps / length would be inf for a zero perturbation; min(1, .) keeps it unchanged
    return delta * torch.clamp(eps / length.clamp_min(1e-12), max=1.0)


def random_start(x: torch.Tensor, eps: float, norm: str,
                 generator: torch.Generator | None, *, in_box: bool = True) -> torch.Tensor:
    """A point drawn uniformly from the eps-ball around ``x``, clipped to [0, 1] if ``in_box``.

    The draw happens on the generator's device (CPU or the model's) and then moves to ``x``,
    so one seeded generator gives the same start wherever the model lives. ``in_box=False``
    leaves the start outside the valid inputs, as Wong et al.'s MNIST code does: the first
    gradient is then taken there, and the step that follows is clipped into the box.
    """
    device = generator.device if generator is not None else x.device
    if norm == "linf":
        noise = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype)
        delta = (2 * noise - 1) * eps
    else:
        # uniform in the L2 ball: gaussian direction, radius eps * U^(1/d)
        direction = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
        direction = direction / flat_norm(direction).clamp_min(1e-12)
        u = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=generator,
                       device=device, dtype=x.dtype)
        delta = direction * eps * u.pow(1.0 / x[0].numel())
    start = x + delta.to(x.device)
    return start.clamp(0.0, 1.0) if in_box else start


def fooled(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per-example success: the target class reached, or the true class lost."""
    prediction = logits.argmax(dim=1)
    return prediction == y if targeted else prediction != y


# --- modes and devices ---------------------------------------------------------------------

@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the duration, then every submodule's previous mode back.

    Restoring per submodule (not ``model.train(was_training)``) keeps a deliberately frozen
    BatchNorm inside a training model frozen.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    """The device of the model's first parameter or buffer, else ``fallback``."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return fallback if tensor is None else tensor.device


def generator_for(seed: int, device: torch.device) -> torch.Generator:
    """A seeded generator on ``device`` (the public attacks draw random starts with it)."""
    return torch.Generator(device=device).manual_seed(seed)
