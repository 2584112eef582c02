"""RobustBench-style result entries for a run's trials evaluated with reference AutoAttack.

One JSON object per chosen trial with the fields RobustBench's leaderboard entries carry
(https://github.com/RobustBench/robustbench, ``model_info/<dataset>/<threat>/<name>.json``),
plus what robustlr knows about the trial (schedule, regime, seed). Unlike RobustBench, numbers
are stored as numbers (``"eps": 0.1``, not ``"8/255"``); accuracies are in percent as on the
leaderboard. By default the best trial per schedule (highest AutoAttack accuracy) is kept.
"""

from __future__ import annotations

from typing import Any

from robustlr.errors import InputError
from robustlr.spec import Spec, SpecError, parse

THREAT_MODELS = {"linf": "Linf", "l2": "L2", "l1": "L1"}
SELECTIONS = ("best", "all")


def autoattack_spec(record: dict[str, Any]) -> Spec | None:
    """The ``autoattack(...)`` spec of the trial's final cascade, if it has one."""
    for text in record.get("final_attacks") or []:
        try:
            spec = parse(text)
        except SpecError:
            continue
        if spec.name == "autoattack":
            return spec
    return None


def _percent(value: Any) -> float | None:
    return None if value is None else round(100 * float(value), 2)


def entry(record: dict[str, Any], *, dataset: str, architecture: str) -> dict[str, Any]:
    spec = autoattack_spec(record)
    assert spec is not None  # choose() keeps only such records
    params = spec.kwargs
    norm = str(params.get("norm", "linf"))
    stages = {key.removeprefix("autoattack_").removesuffix("_acc"): _percent(value)
              for key, value in record.items()
              if key.startswith("autoattack_") and key.endswith("_acc") and key != "autoattack_acc"}
    return {
        "name": f"robustlr {record.get('schedule')} / {record.get('regime')} (seed {record.get('seed')})",
        "trial": record.get("trial"), "dataset": dataset,
        "threat_model": THREAT_MODELS.get(norm, norm), "norm": norm, "eps": float(params["eps"]),
        "clean_acc": _percent(record.get("clean_acc")),
        "autoattack_acc": _percent(record.get("autoattack_acc")),
        "autoattack_version": str(params.get("version", "standard")),
        "autoattack_seed": int(params.get("seed", 0)),
        "autoattack_stages": stages,
        "number_evaluated_examples": record.get("robust_examples"),
        "architecture": architecture, "training_regime": record.get("regime"),
        "schedule": record.get("schedule"), "lr_scale": record.get("lr_scale"),
        "seed": record.get("seed"), "additional_data": False, "number_forward_passes": 1,
        "evaluation": record.get("robust_eval"),
        "footnote": "AutoAttack ran after the other attacks of the final cascade, only on the "
                    "points still robust" if len(record.get("final_attacks") or []) > 1 else None,
    }


def choose(records: list[dict[str, Any]], select: str = "best") -> list[dict[str, Any]]:
    """Trials measured with AutoAttack: all of them, or the best one per schedule."""
    if select not in SELECTIONS:
        raise InputError(f"--select: must be one of {', '.join(SELECTIONS)}, got {select!r}")
    measured = [r for r in records if r.get("status", "ok") == "ok"
                and autoattack_spec(r) is not None and r.get("autoattack_acc") is not None]
    if not measured:
        raise InputError("RUN_DIR: no trial was evaluated with reference AutoAttack; add "
                         "'autoattack(eps=...)' to evaluation.final")
    if select == "all":
        return measured
    best: dict[Any, dict[str, Any]] = {}
    for record in measured:
        key = record.get("schedule")
        score = (record["autoattack_acc"], record.get("clean_acc") or 0.0)
        current = best.get(key)
        if current is None or score > (current["autoattack_acc"], current.get("clean_acc") or 0.0):
            best[key] = record
    return list(best.values())


def entries(records: list[dict[str, Any]], *, dataset: str, architecture: str,
            select: str = "best") -> list[dict[str, Any]]:
    return [entry(r, dataset=dataset, architecture=architecture) for r in choose(records, select)]


# --- the other direction: a model trained elsewhere, evaluated the same way -------------------

def _state_dict(checkpoint: Any) -> dict[str, Any]:
    """The tensors of a plain or wrapped state dict ('state_dict', 'model_state_dict', 'model'),
    without DataParallel's ``module.`` prefix (as RobustBench's loader strips it)."""
    import torch

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
    import torch

    from robustlr import models

    channels = input_shape[0]
    try:
        model = models.build(arch, input_shape=input_shape, num_classes=num_classes,
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
    from pathlib import Path

    from robustlr.models.io import shape_problem

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
    import json

    from robustlr.models import parse_spec
    from robustlr.models.io import shape_problem
    from robustlr.plugins import ZOOS, require_trusted

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
    import math

    return isinstance(values, list) and len(values) == length and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
