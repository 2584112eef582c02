"""Every registry robustlr builds specs from, in one place, and the check that builds every
spec of a config before a run starts (a typo fails now, not in a worker an hour later).

The adversarial and DP packages keep plain name -> class tables so that they stay usable
without robustlr's core; they are wrapped here once, not in the modules that use them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from robustlr import plugins
from robustlr.attacks import EVASION_ATTACKS
from robustlr.attacks.filters import FILTERS as FILTER_CLASSES
from robustlr.attacks.poisoning import POISONS as POISON_CLASSES
from robustlr.averaging import AVERAGING
from robustlr.data.augment import AUGMENTS
from robustlr.models import MODELS
from robustlr.regimes import REGIMES
from robustlr.schedules import SCHEDULES
from robustlr.spec import Registry, SpecError, is_none

if TYPE_CHECKING:
    from robustlr.config import ExperimentConfig


def _wrap(kind: str, table: dict[str, type]) -> Registry:
    registry = Registry(kind)
    for name, cls in table.items():
        registry.register(name, cls)
    return registry


ATTACKS = _wrap("attack", EVASION_ATTACKS)
POISONS = _wrap("poison", POISON_CLASSES)
FILTERS = _wrap("filter", FILTER_CLASSES)
REGISTRIES = {"schedule": SCHEDULES, "regime": REGIMES, "model": MODELS, "attack": ATTACKS,
              "poison": POISONS, "filter": FILTERS, "averaging": AVERAGING, "augment": AUGMENTS}


def check_specs(config: ExperimentConfig) -> list[tuple[str, str]]:
    """Build every spec ``config`` names; returns (field, problem) for each that fails, in
    the config's order (empty when all build)."""
    problems: list[tuple[str, str]] = []

    def attempt(field: str, build: Callable[[Any], Any], value: Any) -> None:
        try:
            build(value)
        except SpecError as error:
            problems.append((field, str(error)))

    for number, dimensions in enumerate(config.dimension_sets()):
        prefix = f"grids[{number}]." if config.grids else ""
        for field, registry in (("schedules", SCHEDULES), ("regimes", REGIMES),
                                ("poisoning", POISONS), ("filter", FILTERS),
                                ("averaging", AVERAGING)):
            for index, value in enumerate(dimensions[field]):
                if field in ("poisoning", "filter", "averaging") and is_none(value):
                    continue
                attempt(f"{prefix}{field}[{index}]", registry.build, value)
    evaluation = config.evaluation
    if evaluation.attack is not None:
        attempt("evaluation.attack", ATTACKS.build, evaluation.attack)
    for index, spec in enumerate(evaluation.final):
        attempt(f"evaluation.final[{index}]", ATTACKS.build, spec)
    attempt("model", lambda spec: MODELS.check(spec, ("input_shape", "num_classes", "mean", "std")),
            config.model)
    if config.train.loss is not None:
        attempt("train.loss", lambda path: plugins.resolve(path, field="train.loss"), config.train.loss)
    for index, spec in enumerate(config.data.augment):  # the input shape is checked with the data
        attempt(f"data.augment[{index}]", AUGMENTS.build, spec)
    return problems
