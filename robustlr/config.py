"""The experiment config: typed, unknown keys rejected, every spec checked before a run starts.

A bad config raises :class:`ConfigError` with one line naming the field (``train.epochs``,
``schedules[2]``) and what is allowed; the CLI prints it and exits with 2 before any run
folder exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from robustlr.data import DataConfig
from robustlr.errors import InputError

SpecValue = str | dict[str, Any]


class ConfigError(InputError):
    """A config that cannot run; the message is one line naming the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainConfig(_Strict):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    device: str = "auto"
    checkpoints: Literal["none", "best", "last", "both"] = "none"

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in ("auto", "cpu", "cuda") and not value.startswith("cuda:"):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {value!r}")
        return value


class EvaluationConfig(_Strict):
    batch_size: int = Field(1000, ge=1)
    attack: SpecValue | None = None  # per-epoch robust accuracy
    subset: int = Field(500, ge=1)  # examples of the test (and validation) set it runs on
    final: list[SpecValue] = Field(default_factory=list)  # the cascade at the end
    final_subset: int | None = Field(None, ge=1)  # test examples for it (None: all)
    select: Literal["clean", "robust"] = "clean"  # best checkpoint by val_acc or val_robust_acc
    sanity: bool = False  # gradient-masking checks on the final model
    corruptions: bool = False  # accuracy under common corruptions at the end
    membership: bool = False  # membership-inference audit of the final model

    @model_validator(mode="after")
    def _needs_attack(self) -> EvaluationConfig:
        for field in ("final", "select", "sanity"):
            if getattr(self, field) not in ([], "clean", False) and self.attack is None:
                raise ValueError(f"evaluation.{field} needs evaluation.attack (the per-epoch attack)")
        return self


class FilteringConfig(_Strict):
    epochs: int = Field(4, ge=1)  # the brief training on poisoned data that filters read


def _positive_scales(values: list[float] | None) -> list[float] | None:
    for value in values or []:
        if value <= 0:
            raise ValueError(f"every LR scale must be > 0, got {value}")
    return values


class GridConfig(_Strict):
    """A sub-grid: the dimensions it sets replace the top-level ones for its trials."""

    schedules: list[SpecValue] | None = Field(None, min_length=1)
    regimes: list[SpecValue] | None = Field(None, min_length=1)
    lr_scales: list[float] | None = Field(None, min_length=1)
    seeds: list[int] | None = Field(None, min_length=1)
    poisoning: list[SpecValue] | None = Field(None, min_length=1)
    filter: list[SpecValue] | None = Field(None, min_length=1)

    @field_validator("lr_scales")
    @classmethod
    def _positive(cls, values: list[float] | None) -> list[float] | None:
        return _positive_scales(values)


DIMENSIONS = ("schedules", "regimes", "lr_scales", "seeds", "poisoning", "filter")


class ReportConfig(_Strict):
    """A ranking under constraints in the report: the best groups by ``rank_by`` among those
    whose seed means meet every bound (e.g. robust_acc subject to epsilon <= 3, asr <= 0.1)."""

    rank_by: str | None = None
    min: dict[str, float] = Field(default_factory=dict)
    max: dict[str, float] = Field(default_factory=dict)

    @field_validator("rank_by")
    @classmethod
    def _known_metric(cls, value: str | None) -> str | None:
        if value is not None:
            _check_metrics([value])
        return value

    @field_validator("min", "max")
    @classmethod
    def _known_metrics(cls, bounds: dict[str, float]) -> dict[str, float]:
        _check_metrics(list(bounds))
        return bounds


def _check_metrics(names: list[str]) -> None:
    from robustlr.records import SUMMARY_METRICS

    unknown = [name for name in names if name not in SUMMARY_METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; allowed: {', '.join(SUMMARY_METRICS)}")


class ExperimentConfig(_Strict):
    name: str = Field("robustlr", pattern=r"^[A-Za-z0-9_.-]+$")
    data: DataConfig = DataConfig(name="digits")
    model: SpecValue = "cnn"
    train: TrainConfig = TrainConfig()
    schedules: list[SpecValue] = Field(..., min_length=1)
    regimes: list[SpecValue] = Field(default_factory=lambda: ["standard"], min_length=1)
    lr_scales: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    evaluation: EvaluationConfig = EvaluationConfig()
    poisoning: list[SpecValue] = Field(default_factory=lambda: ["none"], min_length=1)
    filter: list[SpecValue] = Field(default_factory=lambda: ["none"], min_length=1)
    filtering: FilteringConfig = FilteringConfig()
    # Several sub-grids in one run (e.g. all schedules for standard training, a few for
    # adversarial training); without it the top-level dimensions form the one grid.
    grids: list[GridConfig] = Field(default_factory=list)
    report: ReportConfig = ReportConfig()

    def dimension_sets(self) -> list[dict[str, list]]:
        base = {name: getattr(self, name) for name in DIMENSIONS}
        if not self.grids:
            return [base]
        return [{name: getattr(grid, name) if getattr(grid, name) is not None else base[name]
                 for name in DIMENSIONS} for grid in self.grids]

    @field_validator("lr_scales")
    @classmethod
    def _positive(cls, values: list[float]) -> list[float]:
        return _positive_scales(values)


def _field_path(location: tuple[Any, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "config"


def _check_specs(config: ExperimentConfig) -> None:
    from robustlr.catalog import check_specs  # the catalog imports every registry (torch)

    problems = check_specs(config)
    if problems:
        field, problem = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ConfigError(f"{field}: {problem}{more}")


def from_mapping(raw: Mapping[str, Any] | None) -> ExperimentConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("config: expected a mapping of fields (name, data, model, train, "
                          "schedules, ...)")
    try:
        config = ExperimentConfig.model_validate(dict(raw))
    except ValidationError as error:
        first = error.errors()[0]
        where = _field_path(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; allowed keys are in the README)"
        # Nested models already name their field ("data.val_fraction must be ...").
        raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None
    _check_specs(config)
    return config


def load(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: no such file {str(path)!r}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config: {path} is not valid YAML{where}") from None
    return from_mapping(raw)


def default_path() -> Path:
    return Path(__file__).parent / "configs" / "default.yaml"


def dump(config: ExperimentConfig) -> str:
    """The resolved config (defaults filled in), as saved with each run; it loads back."""
    raw = config.model_dump(mode="json")
    if raw["data"]["name"] != "synthetic":
        raw["data"].pop("synthetic")  # only valid beside name 'synthetic'
    return yaml.safe_dump(raw, sort_keys=False)
