"""Small configs for end-to-end tests: synthetic data, tiny models, a few epochs."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import time
from collections.abc import Callable
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


def kill_when_frozen(process: subprocess.Popen, ready: Callable[[], bool], *,
                     limit: float) -> None:
    """SIGKILL ``process``'s group (a ``start_new_session`` child) at a moment when ``ready()``
    holds of what it has written.

    A check made while the writer runs can be stale by the kill: on a loaded machine the
    parent of a run falls behind its workers, and between the check and the kill it may
    record a backlog of epochs and the trial's end. So the group is stopped (SIGSTOP) before
    each look, and the look sees exactly what the kill leaves behind. Not ready: continue it
    and look again; ``limit`` seconds bound only a hang."""
    deadline = time.monotonic() + limit
    while True:
        if process.poll() is not None:
            said = process.stderr.read()[-2000:] if process.stderr else ""
            raise AssertionError(f"the run ended before it could be killed mid-way: {said!r}")
        assert time.monotonic() < deadline, f"nothing to kill mid-way within {limit:.0f} s"
        os.killpg(process.pid, signal.SIGSTOP)
        if ready():
            os.killpg(process.pid, signal.SIGKILL)
            return
        os.killpg(process.pid, signal.SIGCONT)
        time.sleep(0.05)


def cli(*args: Any) -> Any:
    """``robustlr ARGS`` in this process (click's runner); arguments may be paths."""
    from click.testing import CliRunner

    from robustlr.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def one_line(result: Any, code: int) -> str:
    """The command's one-line error, after checking it exited with ``code``."""
    assert result.exit_code == code, result.output
    message = result.output.strip()
    assert message.startswith("robustlr: error: ") and "\n" not in message, result.output
    return message
