"""Small configs for end-to-end tests: synthetic data, tiny models, a few epochs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

TINY: dict[str, Any] = {
    "name": "tiny",
    "data": {"name": "synthetic", "val_fraction": 0.2, "test_fraction": 0.2,
             "synthetic": {"num_examples": 240, "num_classes": 3, "shape": [1, 6, 6]}},
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"epochs": 3, "batch_size": 32, "lr": 0.1, "momentum": 0.9},
    "schedules": ["constant", "step(milestones=[0.5], gamma=0.1)"],
    "regimes": ["standard"],
    "seeds": [0],
}


def tiny(**overrides: Any) -> dict[str, Any]:
    config = copy.deepcopy(TINY)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def record_lrs(monkeypatch, *, after_step: bool = False) -> list[float]:
    """The LR of every optimizer step the trainer takes. ``after_step`` hooks after the step:
    under a DP memory manager the wrapped optimizer's step runs only for real steps."""
    from robustlr import optimizers

    seen: list[float] = []
    build = optimizers.build

    def recording(*args, **kwargs):
        optimizer = build(*args, **kwargs)
        hook = optimizer.register_step_post_hook if after_step else optimizer.register_step_pre_hook
        hook(lambda opt, a, k: seen.append(opt.param_groups[0]["lr"]))
        return optimizer

    monkeypatch.setattr("robustlr.training.setup.optimizers.build", recording)
    return seen
