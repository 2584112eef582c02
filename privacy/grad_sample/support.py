"""Which grad_sample modes can clip which layers: one line per problem, before training.

- ``hooks``, ``functorch``, ``ghost``, ``ghost_mixed``, ``ghost_bk`` handle any trainable
  layer: a layer without a dedicated rule gets its per-sample gradients from functorch.
- ``ew`` (torch's ExpandedWeights) knows only the layers torch implements it for.
- A parameter shared by two layers: Opacus' ghost modes raise "Parameter tying is not
  supported" at the first forward pass; hooks, functorch and ghost_bk sum per-sample
  gradients over the sharing layers.
"""

from __future__ import annotations

from opacus.utils.module_utils import trainable_modules
from torch import nn

from .modules import unwrap

MODES = ("ghost", "hooks", "functorch", "ew", "ghost_mixed", "ghost_bk")
EXPANDED_WEIGHTS_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding,
                           nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
                           nn.InstanceNorm3d)
TYING_UNSUPPORTED = ("ghost", "ghost_mixed", "ew")


def _modes_for(layer: nn.Module, tied: bool) -> list[str]:
    modes = [m for m in MODES if m != "ew" or type(layer) in EXPANDED_WEIGHTS_LAYERS]
    return [m for m in modes if not (tied and m in TYING_UNSUPPORTED)]


def check_grad_sample_mode(module: nn.Module, mode: str) -> str | None:
    """None when ``mode`` can clip every trainable layer of ``module`` (a plain or an
    Opacus-wrapped model), else one line naming the first layer it cannot and the modes that
    can. ``mode`` itself must be one of :data:`MODES`."""
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
