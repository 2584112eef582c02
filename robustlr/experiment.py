"""An experiment: a config loaded and every spec it names built, before a run starts (a typo
fails now, not in a worker an hour later).

It sits above both :mod:`robustlr.config` (the config's shape) and :mod:`robustlr.catalog`
(the registries), so neither needs the other. A bad config raises
:class:`~robustlr.config.ConfigError` with one line naming the field; the CLI prints it and
exits with 2 before any run folder exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from robustlr import config as config_module
from robustlr import plugins
from robustlr.catalog import ATTACKS, AUGMENTS, AVERAGING, FILTERS, MODELS, POISONS, REGIMES, SCHEDULES
from robustlr.config import ConfigError, ExperimentConfig, default_path, dump
from robustlr.spec import SpecError, is_none


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


def check_private_schedules(config: ExperimentConfig) -> None:
    """A metric-driven schedule (``plateau``, ``torch:ReduceLROnPlateau``) in a grid with a dp
    regime reads a loss every epoch: the validation split's, which is private data unless the
    user declares it public, and no epsilon covers the LR reductions it triggers; without a
    validation split it reads nothing and silently trains at a constant LR."""
    if config.data.public_validation and config.data.val_fraction > 0:
        return
    for number, dimensions in enumerate(config.dimension_sets()):
        if not any(REGIMES.build(spec).name == "dp" for spec in dimensions["regimes"]):
            continue
        prefix = f"grids[{number}]." if config.grids else ""
        for index, spec in enumerate(dimensions["schedules"]):
            if SCHEDULES.build(spec).metric_driven:
                raise ConfigError(
                    f"{prefix}schedules[{index}]: a metric-driven schedule under the dp regime "
                    "reads the private validation loss each epoch, which no epsilon covers; "
                    "choose a schedule that is a function of progress, or set "
                    "data.public_validation: true with a val_fraction above 0 if that split is "
                    "public")


def check(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` itself once every spec it names builds; else the first problem, one line."""
    problems = check_specs(config)
    if problems:
        field, problem = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ConfigError(f"{field}: {problem}{more}")
    check_private_schedules(config)
    return config


def from_mapping(raw: Mapping[str, Any] | None) -> ExperimentConfig:
    """The config ``raw`` describes, validated and with every spec built."""
    return check(config_module.from_mapping(raw))


def load(path: str | Path) -> ExperimentConfig:
    """The config in the YAML file ``path``, validated and with every spec built."""
    return check(config_module.load(path))


__all__ = ["ConfigError", "ExperimentConfig", "check", "check_specs", "default_path", "dump",
           "from_mapping", "load"]
