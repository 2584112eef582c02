"""Expand a config into independent trials: schedule x regime x poison x filter x averaging x
LR scale x seed.

A trial's id is a hash of what defines it, so the same config resumes onto the same ids
whatever order the grid is listed in.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass
from typing import Any

from robustlr.config import ExperimentConfig
from robustlr.data.provenance import compact
from robustlr.spec import is_none, parse


@dataclass(frozen=True)
class Trial:
    schedule: str  # the spec as written (a mapping is printed in the string grammar)
    regime: str
    lr_scale: float
    seed: int
    poison: str = "none"
    filter: str = "none"
    averaging: str = "none"
    data_hash: str = ""  # the data config and split (data_key); "" for a trial built by hand
    setup_hash: str = ""  # train.*, model, evaluation, filtering (setup_key); "" by hand
    model: str = ""  # the model spec as written; described, not hashed (setup_hash covers it)

    @property
    def id(self) -> str:
        canonical = {key: value if key.endswith("_hash") else _canonical(value)
                     for key, value in asdict(self).items() if key != "model"}
        if canonical["averaging"] == "none":  # ids of runs from before averaging stay the same
            del canonical["averaging"]
        for key in ("data_hash", "setup_hash"):  # a trial built by hand keeps its id
            if not canonical[key]:
                del canonical[key]
        digest = hashlib.sha1(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
        return f"{parse(self.schedule).name.replace(':', '_')}-{digest[:10]}"  # a folder name

    def describe(self) -> dict[str, Any]:
        return {"trial": self.id, **asdict(self)}


def _canonical(value: Any) -> Any:
    if isinstance(value, str):
        return "none" if is_none(value) else str(parse(value))
    return value


def spec_text(value: str | dict[str, Any] | None) -> str:
    if is_none(value):
        return "none"
    assert value is not None  # is_none() took it
    return value if isinstance(value, str) else str(parse(value))


def data_key(config: ExperimentConfig) -> str:
    """A hash of what decides a trial's data (dataset, fractions, split seed, limit, ...), so
    the same schedule on another split is another trial; where the files live is not part
    of it."""
    raw = compact(config.data.model_dump(mode="json"))
    for location in ("root", "download"):
        raw.pop(location, None)
    if not raw.get("public_validation"):
        raw.pop("public_validation", None)  # the default: ids of earlier runs stay valid
    return hashlib.sha1(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:12]


NEUTRAL_TRAIN_KEYS = ("checkpoints", "checkpoint_every")
"""train.* keys that decide what is saved, never what is trained or measured."""


def setup_key(config: ExperimentConfig) -> str:
    """A hash of everything besides the grid dimensions and the data that changes a trial's
    result: the training recipe (train.*), the model with its arguments, the evaluation and the
    filtering run. Two configs that differ there never share a trial id, so a resumed or
    merged grid cannot present trials trained two ways as one."""
    raw = {"train": config.train.model_dump(mode="json", exclude=set(NEUTRAL_TRAIN_KEYS)),
           "model": config.model, "evaluation": config.evaluation.model_dump(mode="json"),
           "filtering": config.filtering.model_dump(mode="json")}
    return hashlib.sha1(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:12]


def expand(config: ExperimentConfig) -> list[Trial]:
    data, setup, model = data_key(config), setup_key(config), spec_text(config.model)
    trials = []
    for d in config.dimension_sets():
        product = itertools.product(d["schedules"], d["regimes"], d["poisoning"], d["filter"],
                                    d["averaging"], d["lr_scales"], d["seeds"])
        trials += [Trial(spec_text(schedule), spec_text(regime), float(scale), int(seed),
                         spec_text(poison), spec_text(defence), spec_text(averaging), data,
                         setup, model)
                   for schedule, regime, poison, defence, averaging, scale, seed in product]
    by_id: dict[str, Trial] = {}
    for trial in trials:  # "cosine" and "cosine()" are one trial
        by_id.setdefault(trial.id, trial)
    return list(by_id.values())
