"""Checkpoints: plain tensors plus JSON metadata, loadable with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from robustlr.spec import Spec, parse

FORMAT = 1


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside Opacus' GradSampleModule or torch.compile's wrapper."""
    for attribute in ("_module", "_orig_mod"):
        while isinstance(getattr(model, attribute, None), nn.Module):
            model = getattr(model, attribute)
    return model


def save(model: nn.Module, path: str | os.PathLike, *, spec: str | Mapping[str, Any] | Spec,
         input_shape: Sequence[int], num_classes: int, mean: Sequence[float],
         std: Sequence[float], extra: Mapping[str, Any] | None = None) -> None:
    """Save ``model``'s weights and what :func:`load` needs to rebuild it.

    ``extra`` must be JSON-able (epoch, metrics, ...); it comes back from :func:`read_metadata`.
    """
    meta = {"format": FORMAT, "spec": str(parse(spec, kind="model")),
            "input_shape": [int(d) for d in input_shape], "num_classes": int(num_classes),
            "mean": [float(m) for m in mean], "std": [float(s) for s in std],
            "extra": dict(extra) if extra is not None else None}
    try:
        text = json.dumps(meta)
    except TypeError as error:
        raise TypeError(f"save: 'extra' must be JSON-able: {error}") from None
    state = {key: value.detach().cpu().clone() for key, value in _unwrap(model).state_dict().items()}
    torch.save({"metadata": text, "state_dict": state}, path)


def _read(path: str | os.PathLike, map_location: Any) -> tuple[dict[str, Any], dict]:
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or "metadata" not in checkpoint:
        raise ValueError(f"{os.fspath(path)!r} is not a robustlr model checkpoint")
    meta = json.loads(checkpoint["metadata"])
    if meta.get("format") != FORMAT:
        raise ValueError(f"{os.fspath(path)!r}: checkpoint format {meta.get('format')!r} "
                         f"is not supported (expected {FORMAT})")
    return meta, checkpoint["state_dict"]


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata :func:`save` wrote: spec, input_shape, num_classes, mean, std, extra."""
    return _read(path, "cpu")[0]


def load(path: str | os.PathLike, *, map_location: Any = "cpu") -> nn.Module:
    """Rebuild the saved model, load its weights, and return it in eval mode."""
    from robustlr.models import build

    meta, state = _read(path, map_location)
    model = build(meta["spec"], input_shape=meta["input_shape"], num_classes=meta["num_classes"],
                  mean=meta["mean"], std=meta["std"])
    model.load_state_dict(state)
    return model.to(next(iter(state.values())).device if state else "cpu").eval()
