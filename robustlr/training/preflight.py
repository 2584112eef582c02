"""The checks a grid passes before any run folder exists: the device, the data, the model on
that data, the batch size, the attacks' class count, streaming, and each regime's own check of
the plan (:meth:`~robustlr.regimes.Regime.check_plan`: a DP regime's fit lives in the DP regime,
so the run folder knows nothing of privacy). A missing dataset or a plan that cannot train is
one line now, not one failed trial per grid point.
"""

from __future__ import annotations

from torch import nn

from robustlr import models
from robustlr.catalog import ATTACKS
from robustlr.config import ConfigError, ExperimentConfig
from robustlr.data import DataBundle, DataError, normalization
from robustlr.distributed import DeviceError, resolve_device
from robustlr.errors import InputError
from robustlr.grid import spec_text
from robustlr.regimes import REGIMES
from robustlr.regimes.base import Plan
from robustlr.spec import SpecError, is_none, parse
from robustlr.training.ledger import planned_entries
from robustlr.training.trial import prepare_data


class PreflightError(InputError):
    """A grid that cannot start on this machine or data; one line for the user (exit 2)."""


def check(config: ExperimentConfig) -> None:
    """Load the data once and run every check on it; forked workers inherit the cached data."""
    try:  # a device this machine lacks would fail every trial
        resolve_device(config.train.device)
    except DeviceError as error:
        raise PreflightError(f"train.device: {error}") from None
    try:
        bundle = prepare_data(config.data, config.dimension_sets()[0]["seeds"][0])
    except DataError as error:
        raise PreflightError(f"data: {error}") from None
    try:  # the model on this data: a factory that fails, logits that miss the classes
        model = models.build(config.model, input_shape=bundle.input_shape, num_classes=bundle.num_classes,
                             mean=bundle.mean, std=bundle.std)
    except (SpecError, ValueError) as error:
        raise PreflightError(f"model: {error}") from None
    _check_classes(config, bundle.num_classes)
    examples = len(bundle.train[1])
    if config.train.batch_size > examples:  # every epoch would be one short full batch
        raise PreflightError(f"train.batch_size: {config.train.batch_size} is larger than the "
                             f"{examples} training examples of data {config.data.name!r}; choose at "
                             f"most {examples}")
    if bundle.streamed:
        _check_streamed(config)
    _check_regimes(config, bundle=bundle, model=model)


def _check_classes(config: ExperimentConfig, num_classes: int) -> None:
    """An attack that cannot run on this many classes (reference AutoAttack: 4 for standard)
    is a config error now, not a failure after training."""
    specs = [("evaluation.attack", config.evaluation.attack)] if config.evaluation.attack else []
    specs += [(f"evaluation.final[{i}]", spec) for i, spec in enumerate(config.evaluation.final)]
    for field, spec in specs:
        needed = getattr(ATTACKS.build(spec), "classes_needed", 2)
        if num_classes < needed:
            raise PreflightError(f"{field}: {spec_text(spec)} needs at least {needed} classes; "
                                 f"the data has {num_classes}")


def _check_regimes(config: ExperimentConfig, *, bundle: DataBundle, model: nn.Module) -> None:
    """Each regime's own check of the plan (:meth:`Regime.check_plan`): e.g. a dp regime that
    cannot take one step on this data, whose cap the privacy ledger's other entries already
    spend, that sits behind a poison filter without its scope, or whose grad_sample_mode cannot
    clip a layer of the model, is a config error now, not a trial that trains nothing and is
    ranked anyway."""
    for number, dimensions in enumerate(config.dimension_sets()):
        prefix = f"grids[{number}]." if config.grids else ""
        filters = [spec_text(spec) for spec in dimensions["filter"] if not is_none(spec)]
        for index, spec in enumerate(dimensions["regimes"]):
            regime = REGIMES.build(spec)
            try:  # a private regime's trials normalize with public or DP statistics
                data = normalization.for_trial(config.data, bundle,
                                               private=regime.loss_kind == "private", seed=0)
            except DataError as error:
                raise ConfigError(str(error)) from None
            plan = Plan(dataset_size=len(bundle.train[1]), batch_size=config.train.batch_size,
                        model=model, augmented=bool(config.data.augment),
                        ledger=planned_entries(config, data, regime=spec,
                                               filter=filters[0] if filters else "none"))
            try:
                regime.check_plan(plan)
            except ValueError as error:
                raise ConfigError(f"{prefix}regimes[{index}]: {regime.name}: {error}") from None


def _check_streamed(config: ExperimentConfig) -> None:
    """What needs the training split as tensors (DP's Poisson sampling, poisons, filters,
    the membership audit) cannot run on streamed data yet."""
    needs = [f"regime {name!r}" for dims in config.dimension_sets() for name in
             (parse(value, kind="regime").name for value in dims["regimes"]) if name == "dp"]
    needs += [field for dims in config.dimension_sets() for field in ("poisoning", "filter")
              if any(not is_none(value) for value in dims[field])]
    needs += ["evaluation.membership"] if config.evaluation.membership else []
    if needs:
        raise PreflightError(f"data.stream: the training data streams (it is above "
                             f"data.stream_above_gb or data.stream is true), but {needs[0]} needs "
                             "it in memory; set data.stream: false")
