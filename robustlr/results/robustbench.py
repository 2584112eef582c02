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


def foreign_spec(path: Any, *, arch: str | None, input_shape: str | None,
                 num_classes: int) -> dict[str, Any] | None:
    """How to rebuild a checkpoint trained elsewhere: from ``--arch``/``--input-shape``, else
    from a sidecar ``MODEL.json`` ({arch, input_shape, num_classes[, mean, std]}); None for a
    robustlr checkpoint (neither given)."""
    import json
    from pathlib import Path

    sidecar = Path(path).with_suffix(".json")
    if arch is None and not sidecar.is_file():
        return None
    if arch is None:
        try:
            raw = json.loads(sidecar.read_text())
            arch, shape, num_classes = str(raw["arch"]), raw["input_shape"], int(raw.get("num_classes", 10))
            mean, std = raw.get("mean"), raw.get("std")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise InputError(f"{sidecar}: needs JSON with arch and input_shape "
                             f"({type(error).__name__}: {error})") from None
    else:
        if input_shape is None:
            raise InputError("--input-shape: needed with --arch, e.g. 1,8,8 (channels first)")
        try:
            shape = [int(d) for d in input_shape.split(",")]
        except ValueError:
            raise InputError(f"--input-shape: comma-separated integers like 3,32,32, got {input_shape!r}") from None
        mean = std = None
    if not shape or any(d < 1 for d in shape):
        raise InputError(f"--input-shape: positive sizes like 3,32,32, got {shape!r}")
    return {"arch": arch, "input_shape": tuple(shape), "num_classes": num_classes,
            "mean": tuple(mean) if mean else None, "std": tuple(std) if std else None}
