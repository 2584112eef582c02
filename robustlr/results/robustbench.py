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
