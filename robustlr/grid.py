"""Expand a config into independent trials: schedule x regime x poison x filter x LR scale x
seed.

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
from robustlr.spec import is_none, parse


@dataclass(frozen=True)
class Trial:
    schedule: str  # the spec as written (a mapping is printed in the string grammar)
    regime: str
    lr_scale: float
    seed: int
    poison: str = "none"
    filter: str = "none"

    @property
    def id(self) -> str:
        canonical = {key: _canonical(value) for key, value in asdict(self).items()}
        digest = hashlib.sha1(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
        return f"{parse(self.schedule).name}-{digest[:10]}"

    def describe(self) -> dict[str, Any]:
        return {"trial": self.id, **asdict(self)}


def _canonical(value: Any) -> Any:
    if isinstance(value, str):
        return "none" if is_none(value) else str(parse(value))
    return value


def spec_text(value: str | dict[str, Any] | None) -> str:
    if is_none(value):
        return "none"
    return value if isinstance(value, str) else str(parse(value))


def expand(config: ExperimentConfig) -> list[Trial]:
    trials = []
    for d in config.dimension_sets():
        product = itertools.product(d["schedules"], d["regimes"], d["poisoning"], d["filter"],
                                    d["lr_scales"], d["seeds"])
        trials += [Trial(spec_text(schedule), spec_text(regime), float(scale), int(seed),
                         spec_text(poison), spec_text(defence))
                   for schedule, regime, poison, defence, scale, seed in product]
    by_id: dict[str, Trial] = {}
    for trial in trials:  # "cosine" and "cosine()" are one trial
        by_id.setdefault(trial.id, trial)
    return list(by_id.values())
