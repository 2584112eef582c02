"""ONE assembly of a trial, for every backend (local pool, Ray, ``train --nproc``): data ->
poison stage -> canary stage -> probes -> train -> record. A new stage, field or failure rule is written here
once."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

import torch.distributed as dist

from robustlr.config import ExperimentConfig
from robustlr.data import DataBundle, DataConfig, normalization, prepare
from robustlr.distributed import World
from robustlr.grid import Trial
from robustlr.regimes.dp_settings import settings_of
from robustlr.spec import is_none
from robustlr.training import canary_stage, poison_stage
from robustlr.training.loop import EpochCallback, train_trial
from robustlr.training.probes import build_probes


def prepare_data(data_config: DataConfig, seed: int) -> DataBundle:
    """The trial's clean data, cached per process (forked workers inherit it). The working
    directory is part of the key: a relative ``data.root`` names other files after a chdir
    (a notebook's, or one test's folder after another's)."""
    return _prepared(data_config, seed, os.getcwd())


@functools.lru_cache(maxsize=4)
def _prepared(data_config: DataConfig, seed: int, cwd: str) -> DataBundle:
    return prepare(data_config, seed=seed)


prepare_data.cache_clear = _prepared.cache_clear  # type: ignore[attr-defined]


def _poison_stage(config: ExperimentConfig, trial: Trial, world: World) -> poison_stage.PoisonStage:
    """Poisoned/filtered data prepared once (rank 0) and sent to every rank; clean data is
    deterministic and loaded by each rank itself."""
    clean = is_none(trial.poison) and is_none(trial.filter)
    stage = None
    if clean or world.leader:
        stage = poison_stage.prepare(config, trial, prepare_data(config.data, trial.seed))
    if clean or not world.distributed:
        assert stage is not None
        return stage
    shared: list[Any] = [stage.bundle if stage is not None else None]
    dist.broadcast_object_list(shared, src=0)
    return stage if stage is not None else poison_stage.PoisonStage(shared[0], None, {})


def run_trial(config: ExperimentConfig, trial: Trial, *, on_epoch: EpochCallback,
              trial_dir: Path | None = None, save_model: bool = False,
              world: World | None = None) -> dict[str, Any]:
    """Train one trial and return its summary record (``wall_seconds`` covers all of it).
    Under several processes every rank calls this; rank 0 alone probes and writes files."""
    started = time.perf_counter()
    world = world or World()
    stage = _poison_stage(config, trial, world)
    stage.bundle = normalization.for_trial(config.data, stage.bundle, seed=trial.seed,
                                           private=settings_of(trial.regime) is not None)
    canaries = canary_stage.prepare(config, trial, stage.bundle)  # deterministic on every rank
    probes = build_probes(config, trial, canaries.probed, stage.poison) if world.leader else []
    if world.leader and canaries.probe is not None:
        probes.append(canaries.probe)
    summary = train_trial(
        config, trial, canaries.bundle, on_epoch=on_epoch, world=world,
        trial_dir=trial_dir if world.leader else None, save_model=save_model and world.leader,
        probes=probes)
    summary.update(stage.summary)
    summary.update(canary_stage.finish(canaries, summary))
    summary["wall_seconds"] = time.perf_counter() - started
    return summary


def failed_record(trial: Trial, message: str, **extra: Any) -> dict[str, Any]:
    """The summary of a trial that raised: what defines it, the status and the one-line
    error."""
    return {**trial.describe(), "status": "failed", "error": message, **extra}
