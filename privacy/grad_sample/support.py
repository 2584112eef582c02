"""Which grad_sample modes can clip which layers: one line per problem, before training.

What each mode supports is its row in :mod:`.modes` (``layers``, ``supports_tying``).
"""

from __future__ import annotations

from opacus.utils.module_utils import trainable_modules
from torch import nn

from .modes import MODES
from .modules import unwrap


def _modes_for(layer: nn.Module, tied: bool) -> list[str]:
    return [name for name, row in MODES.items() if row.supports(layer, tied=tied)]


def check_grad_sample_mode(module: nn.Module, mode: str) -> str | None:
    """None when ``mode`` can clip every trainable layer of ``module`` (a plain or an
    Opacus-wrapped model), else one line naming the first layer it cannot and the modes that
    can. ``mode`` itself must be one of :data:`.modes.MODES`."""
    if mode not in MODES:
        return f"grad_sample_mode must be one of {', '.join(MODES)}; got {mode!r}"
    layers = list(trainable_modules(unwrap(module)))
    owners: dict[int, int] = {}
    for _, layer in layers:
        for p in layer.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    for name, layer in layers:
        tied = any(owners[id(p)] > 1 for p in layer.parameters(recurse=False))
        modes = _modes_for(layer, tied)
        if mode not in modes:
            why = " (its parameters are shared with another layer)" if tied else ""
            return (f"grad_sample_mode {mode!r} does not support layer {name!r} "
                    f"({type(layer).__name__}){why}; modes that do: {', '.join(modes)}")
    return None
