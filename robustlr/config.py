"""The experiment config: typed, unknown keys rejected.

This module reads and validates the config's shape; :mod:`robustlr.experiment` loads it and
also builds every spec it names (the registries sit above this module). A bad config raises
:class:`ConfigError` with one line naming the field (``train.epochs``, ``schedules[2]``) and
what is allowed; the CLI prints it and exits with 2 before any run folder exists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from robustlr import safe_yaml
from robustlr.data import DataConfig
from robustlr.errors import InputError
from robustlr.records import SUMMARY_METRICS, from_report_units
from robustlr.spec import SpecError, parse

SpecValue = str | dict[str, Any]


class ConfigError(InputError):
    """A config that cannot run; the message is one line naming the field."""


class _Strict(BaseModel):
    # .inf and .nan are valid YAML floats; no field of a config means anything with them
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# every consumer of a seed (numpy, torch, scikit-learn's splits) takes [0, 2**32 - 1]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


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
    # the user's recipe (see robustlr.training.recipe); batch_size is the micro-batch
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    compile: bool = False
    grad_clip: float | None = Field(None, gt=0)  # max total gradient norm per optimizer step
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    loss: str | None = None
    """The user's training loss, ``"package.module:loss"``: ``loss(logits, y)`` returns a
    scalar tensor, used by every regime's training loss in place of cross-entropy (not dp:
    Opacus clips per-sample gradients of its own criterion). Evaluation stays cross-entropy."""
    accumulate: int = Field(1, ge=1)  # micro-batches per optimizer step
    checkpoint_every: int | None = Field(None, ge=1)  # epochs between resume checkpoints

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:[0-9]{1,3}", value):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {value!r}")
        return value


class CertifyConfig(_Strict):
    """Randomized-smoothing certification (Cohen et al. 2019) at the end of each trial."""

    sigma: float = Field(0.25, gt=0)  # the Gaussian noise; train with gaussian(sigma=...) alike
    n0: int = Field(100, ge=1)  # noisy samples that pick the class
    n: int = Field(10000, ge=2)  # noisy samples that bound its probability
    alpha: float = Field(0.001, gt=0, lt=1)  # failure probability per example
    subset: int = Field(500, ge=1)  # test examples certified (a fixed, seeded subset)
    batch_size: int = Field(1000, ge=1)  # noisy copies per forward pass

    @model_validator(mode="after")
    def _n0_below_n(self) -> CertifyConfig:
        if self.n0 >= self.n:
            raise ValueError(f"evaluation.certify.n0 must be smaller than evaluation.certify.n, "
                             f"got n0={self.n0}, n={self.n}")
        return self


class PrivacyAuditConfig(_Strict):
    """The one-run canary audit of DP trials (Steinke, Nasr & Jagielski 2023): ``canaries``
    training examples with random wrong labels, each trained on with probability 1/2."""

    canaries: int = Field(500, ge=2)
    confidence: float = Field(0.95, gt=0, lt=1)


class EvaluationConfig(_Strict):
    batch_size: int = Field(1000, ge=1)
    attack: SpecValue | None = None  # per-epoch robust accuracy
    subset: int = Field(500, ge=1)  # examples of the test (and validation) set it runs on
    final: list[SpecValue] = Field(default_factory=list)  # the cascade at the end
    final_subset: int | None = Field(None, ge=1)  # test examples for it (None: all)
    # best checkpoint by val_acc ("clean") or monitor_val_robust_acc ("robust"); "auto": robust
    # under an adversarial regime (the field's practice, Rice et al. 2020), clean otherwise
    select: Literal["auto", "clean", "robust"] = "auto"
    sanity: bool = False  # gradient-masking checks on the final model
    corruptions: bool = False  # accuracy under common corruptions at the end
    membership: bool = False  # membership-inference audit of the final model
    certify: CertifyConfig | None = None  # certified L2 accuracy by randomized smoothing
    privacy_audit: PrivacyAuditConfig | None = None  # one-run canary audit of DP trials

    @model_validator(mode="after")
    def _needs_attack(self) -> EvaluationConfig:
        for field in ("final", "select", "sanity"):
            if getattr(self, field) not in ([], "clean", "auto", False) and self.attack is None:
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
    seeds: list[Seed] | None = Field(None, min_length=1)
    poisoning: list[SpecValue] | None = Field(None, min_length=1)
    filter: list[SpecValue] | None = Field(None, min_length=1)
    averaging: list[SpecValue] | None = Field(None, min_length=1)

    @field_validator("lr_scales")
    @classmethod
    def _positive(cls, values: list[float] | None) -> list[float] | None:
        return _positive_scales(values)


DIMENSIONS = ("schedules", "regimes", "lr_scales", "seeds", "poisoning", "filter", "averaging")


SELECTION_EPSILON = 1.0  # report.selection_epsilon's default (see ReportConfig)


class ReportConfig(_Strict):
    """A ranking under constraints in the report: the best groups by ``rank_by`` among those
    whose seed means meet every bound (e.g. robust_acc subject to epsilon <= 3, asr <= 10),
    bounds in the report's units (percent for shares). ``select_lr: validation`` reports each
    schedule at the LR scale with the best validation accuracy (per regime and poisoning arm);
    under DP, with a private validation split, that choice is report-noisy-max and each one
    costs ``selection_epsilon`` (docs/privacy-ledger.md, "Choosing with private data")."""

    rank_by: str | None = None
    min: dict[str, float] = Field(default_factory=dict)
    max: dict[str, float] = Field(default_factory=dict)
    select_lr: Literal["none", "validation"] = "none"
    # Gumbel noise of 2 / (epsilon x validation size) in accuracy: 0.74 points on digits'
    # 270 validation examples, about the spread between seeds there
    selection_epsilon: float = Field(SELECTION_EPSILON, gt=0)
    # attack success (percent) above which a poisoned group is backdoored: it never qualifies
    # in the ranking under constraints unless a bound on asr says otherwise (null: it may)
    backdoored_asr: float | None = Field(50.0, gt=0, le=100)

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
        for name, limit in bounds.items():
            from_report_units(name, str(limit))  # a share written as a fraction is refused
        return bounds


def _check_metrics(names: list[str]) -> None:
    unknown = [name for name in names if name not in SUMMARY_METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; allowed: {', '.join(SUMMARY_METRICS)}")


class ExperimentConfig(_Strict):
    # the run folder is NAME-YYYYmmdd-HHMMSS: keep it well inside a file name's 255 bytes
    name: str = Field("robustlr", pattern=r"^[A-Za-z0-9_.-]+$", max_length=100)
    data: DataConfig = DataConfig(name="digits")
    model: SpecValue = "cnn"
    train: TrainConfig = TrainConfig()
    schedules: list[SpecValue] = Field(..., min_length=1)
    regimes: list[SpecValue] = Field(default_factory=lambda: list[SpecValue](["standard"]), min_length=1)
    lr_scales: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    evaluation: EvaluationConfig = EvaluationConfig()
    poisoning: list[SpecValue] = Field(default_factory=lambda: list[SpecValue](["none"]), min_length=1)
    filter: list[SpecValue] = Field(default_factory=lambda: list[SpecValue](["none"]), min_length=1)
    # weight averaging evaluated beside the raw weights: none, "ema(decay=0.999)", "swa(start=0.75)"
    averaging: list[SpecValue] = Field(default_factory=lambda: list[SpecValue](["none"]), min_length=1)
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
        return _positive_scales(values) or []

    @model_validator(mode="after")
    def _recipe_fits_regimes(self) -> ExperimentConfig:
        _check_recipe(self)
        return self


# What the DP regime cannot combine with: it owns physical/logical batches, clipping and the
# loss (Opacus' criterion).
_DP_REFUSED = {
    "accumulate": "dp has its own logical batches: use dp(physical_batch_size=...)",
    "grad_clip": "dp clips per sample: use dp(max_grad_norm=...)",
    "label_smoothing": "dp's loss is Opacus' criterion",
    "loss": "dp's loss is Opacus' criterion",
    "precision": "per-sample gradients must be clipped in fp32: a bf16/fp16 norm can exceed "
                 "the clipping bound the accountant assumes",
    "compile": "Opacus' per-sample hooks do not go through torch.compile",
}


def _check_best_checkpoint(config: ExperimentConfig, private: bool) -> None:
    """best.pt under DP would be an epoch chosen exactly on the private validation split."""
    if (private and config.train.checkpoints in ("best", "both")
            and not config.data.public_validation and config.data.val_fraction > 0):
        raise ValueError(f"train.checkpoints: {config.train.checkpoints} under the dp regime "
                         "picks an epoch on the private validation split, which no epsilon "
                         "covers; use last, or set data.public_validation: true if that split "
                         "is public")


def _check_recipe(config: ExperimentConfig) -> None:
    train = config.train
    used = {"accumulate": train.accumulate > 1, "grad_clip": train.grad_clip is not None,
            "label_smoothing": train.label_smoothing > 0, "precision": train.precision != "fp32",
            "compile": train.compile, "loss": train.loss is not None}
    regimes = [regime for d in config.dimension_sets() for regime in d["regimes"]]
    try:
        private = any(parse(regime).name == "dp" for regime in regimes)
    except SpecError:
        return  # check_specs names the bad regime spec
    if config.evaluation.privacy_audit is not None and not private:
        raise ValueError("evaluation.privacy_audit audits DP trials: add a dp(...) regime, "
                         "or use evaluation.membership for non-private ones")
    for field, reason in _DP_REFUSED.items():
        if private and used[field]:
            raise ValueError(f"train.{field} cannot be used with the dp regime ({reason})")
    _check_best_checkpoint(config, private)


def _field_path(location: tuple[Any, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "config"


def from_mapping(raw: Mapping[str, Any] | None) -> ExperimentConfig:
    """The config ``raw`` describes, its fields and their combinations validated; the specs it
    names are parsed, not built (:func:`robustlr.experiment.from_mapping` builds them too)."""
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
    return config


def load(path: str | Path) -> ExperimentConfig:
    """The config in the YAML file ``path``, as :func:`from_mapping` validates it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: no such file {str(path)!r}")
    try:
        raw = safe_yaml.load_file(path)  # bounded: an alias bomb or binary file is one line
    except safe_yaml.YamlInputError as error:
        raise ConfigError(f"config: {error}") from None
    return from_mapping(raw)


def default_path() -> Path:
    return Path(__file__).parent / "configs" / "default.yaml"


def dump(config: ExperimentConfig) -> str:
    """The resolved config (defaults filled in), as saved with each run; it loads back."""
    raw = config.model_dump(mode="json")
    if raw["data"]["name"] != "synthetic":
        raw["data"].pop("synthetic")  # only valid beside name 'synthetic'
    for key in ("mean", "std", "normalization"):  # unset: the resolved config of older runs
        if raw["data"].get(key, 0) is None:
            raw["data"].pop(key)
    return yaml.safe_dump(raw, sort_keys=False)
