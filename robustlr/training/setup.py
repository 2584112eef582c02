"""Everything a trial or an LR range test needs before its first step, built one way: the
device, seeded generators, the model, the batches, the optimizer and the regime's wrapping;
and the one step both of them take (so lr-find measures the trainer's own step)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from robustlr import models, optimizers, plugins
from robustlr.config import ExperimentConfig
from robustlr.data import DataBundle, augment, normalization, streaming
from robustlr.distributed import ShardedBatches, World, check_batches, resolve_device
from robustlr.errors import InputError
from robustlr.regimes import REGIMES, Regime, TrainingSetup
from robustlr.regimes.dp_settings import settings_of
from robustlr.training.ledger import planned_entries
from robustlr.training.recipe import Recipe


class TensorBatches:
    """Shuffled mini-batches of in-memory tensors (a DataLoader costs more than the step for
    the small models robustlr audits). The order is a permutation drawn from ``generator``
    each epoch, so a seed fixes every batch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                 generator: torch.Generator, device: torch.device):
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size, self.generator = batch_size, generator

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.y), generator=self.generator).to(self.x.device)
        for index in order.split(self.batch_size):
            yield self.x[index], self.y[index]


@dataclass
class Prepared:
    setup: TrainingSetup  # as the regime wrapped it (DP replaces model, optimizer, loader)
    regime: Regime
    recipe: Recipe  # precision, accumulation, clipping: pass it to backward() and step()
    data: DataBundle  # with the normalization this regime may release (what to save with it)


def prepare(config: ExperimentConfig, data: DataBundle, *, regime_spec: str, seed: int,
            lr: float, total_steps: Callable[[int], int], world: World | None = None,
            warmup: float | None = None) -> Prepared:
    """Build a trial's model, batches, optimizer and regime. ``total_steps(steps_per_epoch)``
    plans the run's optimizer steps (with ``train.accumulate``, fewer than batches);
    ``warmup`` (a fraction of them) is passed to a schedule-free optimizer, which warms up
    inside itself."""
    world = world or World()
    device = resolve_device(config.train.device, world)
    data = normalization.for_trial(config.data, data, private=settings_of(regime_spec) is not None,
                                   seed=seed)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    regime: Regime = REGIMES.build(regime_spec)
    regime.label_smoothing = config.train.label_smoothing
    if config.train.loss is not None:
        regime.loss_fn = plugins.resolve(config.train.loss, field="train.loss")
    recipe = Recipe.from_config(config.train, device)
    model = models.build(config.model, input_shape=data.input_shape,
                         num_classes=data.num_classes, mean=data.mean, std=data.std).to(device)
    if recipe.channels_last:  # before the optimizer sees the parameters
        model = model.to(memory_format=torch.channels_last)
    x_train, y_train = data.train
    loader = _loader(config, data, generator, device, world)
    steps = total_steps(recipe.steps_per_epoch(len(loader)))
    optimizer = optimizers.build(config.train, model.parameters(), lr=lr,
                                 schedule_free_warmup_steps=None if warmup is None
                                 else round(warmup * steps))
    setup = regime.prepare(TrainingSetup(
        model=model, optimizer=optimizer, loader=loader, total_steps=steps,
        epochs=math.ceil(steps / recipe.steps_per_epoch(len(loader))), dataset_size=len(y_train),
        batch_size=config.train.batch_size, device=device, generator=generator,
        train_data=(x_train, y_train), world=world, ledger=planned_entries(config, data, regime=regime_spec)))
    augmentation = augment.build(config.data.augment, input_shape=data.input_shape)
    if regime.views > 1 and augmentation is None:
        raise InputError("dp: augmult needs data.augment (an example's views are augmentations "
                         "of it)")
    if augmentation is not None and not data.streamed:  # streamed: per example, in the workers
        setup.loader = augment.AugmentedBatches(setup.loader, augmentation, generator,
                                                views=regime.views)
    return Prepared(setup, regime, recipe, data)


def _loader(config: ExperimentConfig, data: DataBundle, generator: torch.Generator,
            device: torch.device, world: World):
    """The training batches: a DataLoader over streamed data (augmented per example), else
    the in-memory tensors on the device (one process, or this rank's shard)."""
    batch_size = config.train.batch_size
    if data.streamed:
        if world.distributed:
            raise InputError("data.stream: streamed training data is not supported with "
                             "train --nproc yet; set data.stream: false")
        augmentation = augment.build(config.data.augment, input_shape=data.input_shape)
        return streaming.loader(data.train_stream, batch_size=batch_size, generator=generator,
                                device=device, workers=config.data.workers,
                                transform=augmentation.items() if augmentation else None)
    x_train, y_train = data.train
    if world.distributed:
        check_batches(len(y_train), batch_size, world)
        return ShardedBatches(x_train, y_train, batch_size=batch_size, generator=generator,
                              device=device, world=world)
    return TensorBatches(x_train, y_train, batch_size=batch_size, generator=generator, device=device)


def begin_step(setup: TrainingSetup, regime: Regime, *, lr: float, progress: float) -> str | None:
    """Set the LR for the next optimizer step and let the regime look ahead; returns why
    training must stop before this step (e.g. it would break a DP budget), else None."""
    optimizers.set_lr(setup.optimizer, lr)
    regime.before_step(progress=progress)
    return regime.stop_reason()


def backward(setup: TrainingSetup, regime: Regime, x: torch.Tensor, y: torch.Tensor, *,
             progress: float, recipe: Recipe | None = None) -> dict[str, torch.Tensor]:
    """The regime's losses for one batch, under the recipe's autocast, back-propagated into
    the accumulated gradient; ``loss`` comes back detached (Opacus' ghost-clipping loss is no
    tensor but detaches to one). The caller then calls ``recipe.step(...)`` when
    ``recipe.ready(...)`` (without a recipe: ``regime.step(optimizer)``), which says whether
    an optimizer step was taken."""
    recipe = recipe or Recipe(device=setup.device)
    x = recipe.inputs(x)
    with recipe.autocast():
        out = regime.losses(setup.model, x, y, progress=progress)
    recipe.backward(out["loss"], setup.optimizer)
    return {**out, "loss": out["loss"].detach()}
