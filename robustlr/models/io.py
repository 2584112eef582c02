"""Checkpoints: plain tensors plus JSON metadata, loadable with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from robustlr.errors import InputError
from robustlr.models.plugin import is_plugin, parse_spec
from robustlr.models.registry import build
from robustlr.nofollow import write_atomic
from robustlr.plugins import ZOOS, require_trusted, trusted_set
from robustlr.records import finite
from robustlr.spec import Spec, SpecError

FORMAT = 1
MAX_CLASSES = 1 << 17
MAX_INPUT_ELEMENTS = 1 << 24
"""Bounds on shapes read from a file: a dry run allocates two inputs and the head a row per
class, so a file asking for 10**15 values per input is refused before any allocation."""


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
    parsed = parse_spec(spec)
    meta = {"format": FORMAT, "spec": str(parsed),
            "input_shape": [int(d) for d in input_shape], "num_classes": int(num_classes),
            "mean": [float(m) for m in mean], "std": [float(s) for s in std],
            "extra": dict(extra) if extra is not None else None}
    if is_plugin(parsed.name):  # the user's factory: import path and kwargs, for other tools
        meta["factory"] = parsed.name
        meta["kwargs"] = {key: list(v) if isinstance(v, tuple) else v for key, v in parsed.params}
    try:
        text = json.dumps(meta)
    except TypeError as error:
        raise TypeError(f"save: 'extra' must be JSON-able: {error}") from None
    state = {key: value.detach().cpu().clone() for key, value in _unwrap(model).state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"metadata": text, "state_dict": state}, buffer)
    # a fresh file renamed over ``path``: a link planted at ``path`` is refused, never followed
    write_atomic(path, buffer.getbuffer(), check_folder=False)


def _read(path: str | os.PathLike, map_location: Any) -> tuple[dict[str, Any], dict]:
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or "metadata" not in checkpoint:
        raise ValueError(f"{os.fspath(path)!r} is not a robustlr model checkpoint")
    meta = _checked_metadata(checkpoint["metadata"], os.fspath(path))
    if not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{os.fspath(path)!r}: the checkpoint holds no state_dict")
    return meta, checkpoint["state_dict"]


class CheckpointError(InputError):
    """A checkpoint whose metadata is not what :func:`save` writes (one line)."""


def _checked_metadata(text: Any, where: str) -> dict[str, Any]:
    """The metadata of a file that may come from anyone: bounded JSON, a spec in the bounded
    grammar (``9**9**9`` cannot hang a load), and shapes and statistics of sane types."""
    try:
        meta = json.loads(text) if isinstance(text, str) and len(text) <= 1 << 20 else None
    except (ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where!r}: the checkpoint metadata is not a JSON object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{where!r}: checkpoint format {meta.get('format')!r} "
                              f"is not supported (expected {FORMAT})")
    if not isinstance(meta.get("spec"), str):
        raise CheckpointError(f"{where!r}: the checkpoint metadata has no model spec")
    try:
        parse_spec(meta["spec"])
    except SpecError as error:
        raise CheckpointError(f"{where!r}: model spec: {error}") from None
    problem = shape_problem(meta.get("input_shape"), meta.get("num_classes"))
    if problem:
        raise CheckpointError(f"{where!r}: {problem}")
    for key in ("mean", "std"):
        values = meta.get(key)
        if not (isinstance(values, list) and len(values) <= 64
                and all(finite(v) is not None for v in values)):
            raise CheckpointError(f"{where!r}: {key} is not a short list of finite numbers")
    return meta


def shape_problem(shape: Any, classes: Any) -> str | None:
    """Why ``input_shape``/``num_classes`` read from a file cannot be built, or None."""
    if not (isinstance(shape, list) and 1 <= len(shape) <= 4 and _ints(shape, 1, 1 << 16)):
        return "input_shape is not a list of 1 to 4 positive integers"
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        return (f"input_shape {shape} has {math.prod(shape)} values per input; at most "
                f"{MAX_INPUT_ELEMENTS} are accepted from a file")
    if not _ints([classes], 2, MAX_CLASSES):
        return f"num_classes must be an integer in [2, {MAX_CLASSES}], got {classes!r}"
    return None


def _ints(values: Any, low: int, high: int) -> bool:
    return isinstance(values, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in values)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata :func:`save` wrote: spec, input_shape, num_classes, mean, std, extra."""
    return _read(path, "cpu")[0]


def load(path: str | os.PathLike, *, map_location: Any = "cpu",
         trust: Iterable[str] = ()) -> nn.Module:
    """Rebuild the saved model, load its weights, and return it in eval mode.

    The file names the model; a built-in, torchvision or timm model is rebuilt from that name,
    but a user factory (``"mymodels:Net"``) is imported and called only if ``trust`` names it:
    a checkpoint from elsewhere could name ``os:system``. Otherwise an
    :class:`~robustlr.plugins.UntrustedFactory` error names what it would import."""
    trusted = trusted_set(trust)
    meta, state = _read(path, map_location)
    spec = parse_spec(meta["spec"])
    require_trusted(spec.name, spec.params, trusted, where=repr(os.fspath(path)), zoos=ZOOS)
    model = build(meta["spec"], input_shape=meta["input_shape"], num_classes=meta["num_classes"],
                  mean=meta["mean"], std=meta["std"])
    model.load_state_dict(state)
    return model.to(next(iter(state.values())).device if state else "cpu").eval()
