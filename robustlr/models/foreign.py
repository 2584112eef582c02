"""Models trained elsewhere, evaluated the same way: a RobustBench-style local checkpoint (a plain
state dict) loaded into one of robustlr's architectures, and how to rebuild it (``--arch`` and
``--input-shape``, or a sidecar ``MODEL.json`` that comes with a downloaded file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from robustlr.errors import InputError
from robustlr.models.io import shape_problem
from robustlr.models.plugin import parse_spec
from robustlr.models.registry import build
from robustlr.plugins import ZOOS, require_trusted
from robustlr.records import finite
from robustlr.spec import SpecError


def _state_dict(checkpoint: Any) -> dict[str, Any]:
    """The tensors of a plain or wrapped state dict ('state_dict', 'model_state_dict', 'model'),
    without DataParallel's ``module.`` prefix (as RobustBench's loader strips it)."""
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise InputError("MODEL_PATH: not a state dict (a mapping of parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def load_checkpoint(path: Any, *, arch: str, input_shape: tuple[int, ...], num_classes: int,
                    mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> Any:
    """A model of robustlr's architecture ``arch`` with the weights of a RobustBench-style local
    checkpoint (a state dict), in eval mode. Inputs stay in [0, 1]: normalization is the model's
    ``Normalize`` layer, whose mean and std come from the state dict when it has them."""
    channels = input_shape[0]
    try:
        model = build(arch, input_shape=input_shape, num_classes=num_classes,
                             mean=mean or (0.0,) * channels, std=std or (1.0,) * channels)
    except (SpecError, ValueError) as error:
        raise InputError(f"--arch: {error}") from None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated file or a pickle that is not plain tensors
        raise InputError(f"MODEL_PATH: cannot load {str(path)!r} as a state dict "
                         f"({type(error).__name__})") from None
    state = _state_dict(checkpoint)
    own = model.state_dict()
    if mean is not None or std is not None:  # explicit values win over the checkpoint's
        state = {k: v for k, v in state.items() if not k.startswith("normalize.")}
    missing = [k for k in own if k not in state and not k.startswith("normalize.")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise InputError(f"MODEL_PATH: the state dict does not fit --arch {arch}: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise InputError(f"MODEL_PATH: the state dict does not fit --arch {arch}: "
                         f"{str(error).splitlines()[-1].strip()}") from None
    return model.eval()


SIDECAR_BYTES = 1 << 20


def foreign_spec(path: Any, *, arch: str | None, input_shape: str | None,
                 num_classes: int, trust: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """How to rebuild a checkpoint trained elsewhere: from ``--arch``/``--input-shape``, else
    from a sidecar ``MODEL.json`` ({arch, input_shape, num_classes[, mean, std]}); None for a
    robustlr checkpoint (neither given). A sidecar comes with a downloaded file: its ``arch``
    resolves only in robustlr's registry and the torchvision/timm families unless ``trust``
    names it, and its sizes are bounded before anything is allocated."""
    sidecar = Path(path).with_suffix(".json")
    if arch is None and not sidecar.is_file():
        return None
    if arch is None:
        return _sidecar(sidecar, trust)
    if input_shape is None:
        raise InputError("--input-shape: needed with --arch, e.g. 1,8,8 (channels first)")
    try:
        shape = [int(d) for d in input_shape.split(",")]
    except ValueError:
        raise InputError(f"--input-shape: comma-separated integers like 3,32,32, got {input_shape!r}") from None
    problem = shape_problem(shape, num_classes)
    if problem:
        raise InputError(f"--input-shape/--num-classes: {problem}")
    return {"arch": arch, "input_shape": tuple(shape), "num_classes": num_classes,
            "mean": None, "std": None}


def _sidecar(sidecar: Any, trust: frozenset[str]) -> dict[str, Any]:
    def refuse(why: str) -> InputError:
        return InputError(f"{sidecar}: {why}")

    if sidecar.stat().st_size > SIDECAR_BYTES:
        raise refuse(f"larger than {SIDECAR_BYTES} bytes; a sidecar holds a few fields")
    try:
        raw = json.loads(sidecar.read_bytes())
    except (ValueError, RecursionError) as error:
        raise refuse(f"not JSON ({type(error).__name__})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("arch"), str) or "input_shape" not in raw:
        raise refuse("needs a JSON object with arch (a model spec) and input_shape")
    arch, shape, num_classes = raw["arch"], raw["input_shape"], raw.get("num_classes", 10)
    try:
        spec = parse_spec(arch)
    except SpecError as error:
        raise refuse(f"arch: {error}") from None
    require_trusted(spec.name, spec.params, trust, where=f"{sidecar}: arch", zoos=ZOOS)
    problem = shape_problem(shape, num_classes)
    if problem:
        raise refuse(problem)
    stats = {key: raw.get(key) for key in ("mean", "std")}
    for key, values in stats.items():
        if values is not None and not _finite_list(values, shape[0]):
            raise refuse(f"{key} must be a list of {shape[0]} finite numbers (one per channel)")
    return {"arch": arch, "input_shape": tuple(shape), "num_classes": num_classes,
            "mean": tuple(stats["mean"]) if stats["mean"] else None,
            "std": tuple(stats["std"]) if stats["std"] else None}


def _finite_list(values: Any, length: int) -> bool:
    return isinstance(values, list) and len(values) == length and all(
        finite(v) is not None for v in values)
