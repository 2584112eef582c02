"""Trials that resume mid-way: a run killed with SIGKILL part-way through an epoch and resumed
with ``--resume`` ends with the same summary (every non-timing field) and the same epoch rows
as a run never interrupted, for a standard, a PGD-AT (with EMA), a DP (noise and clipping
schedules under a budget guard: epsilon included) and a poisoned trial; a torn checkpoint falls
back to the one before."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import tiny, write_config

from robustlr.training import checkpoint

EPOCHS = 6
CONFIG = tiny(
    data={"synthetic": {"num_examples": 800, "num_classes": 3, "shape": [1, 6, 6]}},
    schedules=["cosine"], train={"epochs": EPOCHS, "batch_size": 16, "checkpoint_every": 1},
    evaluation={"attack": "pgd(eps=0.1, steps=3)", "subset": 60},
    grids=[{"regimes": ["standard"]},
           {"regimes": ["pgd_at(eps=0.1, steps=2)"], "averaging": ["ema(decay=0.9)"]},
           {"regimes": ["dp(target_epsilon=6.0, noise_schedule='linear(final=0.5)', "
                        "clip_schedule='cosine')"]},
           {"poisoning": ["badnets(rate=0.1, target=0, size=2)"]}])


TRIALS = len(CONFIG["grids"])


def _is_timing(key: str) -> bool:
    return "seconds" in key or key == "samples_per_second"


def _results(run_dir: Path) -> tuple[dict, list]:
    summaries = {r["trial"]: {k: v for k, v in r.items() if not _is_timing(k)}
                 for r in json.loads((run_dir / "summary.json").read_text())}
    rows = (run_dir / "epochs.csv").read_text().splitlines()
    header = rows[0].split(",")
    keep = [i for i, name in enumerate(header) if not _is_timing(name)]
    return summaries, [[line.split(",")[i] for i in keep] for line in rows]


def _robustlr(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    return subprocess.Popen([sys.executable, "-m", "robustlr", "run", *args, "--workers", "1",
                             "--no-progress"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _kill_after_checkpoint(process: subprocess.Popen, run_dir: Path, *, skip: set[str],
                           epoch: int, rng: random.Random) -> str:
    """SIGKILL the run once a trial not in ``skip`` has written its checkpoint of ``epoch``
    (plus a random few milliseconds, so the kill lands at a random step of the next epoch);
    returns that trial's id."""
    deadline = time.monotonic() + 600  # a loaded machine starts torch slowly
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended before it was killed: {process.stderr.read()}"
        for trial_dir in (run_dir / "trials").glob("*"):
            if trial_dir.name not in skip and (trial_dir / "resume" / f"epoch-{epoch:05d}.pt").exists():
                time.sleep(rng.uniform(0.0, 0.05))
                process.send_signal(signal.SIGKILL)
                process.wait()
                return trial_dir.name
        time.sleep(0.005)
    process.kill()
    raise AssertionError("no checkpoint appeared within ten minutes")


@pytest.mark.slow
def test_a_killed_run_resumes_each_trial_to_the_uninterrupted_result(tmp_path):
    config = write_config(tmp_path / "config.yaml", CONFIG)
    reference = _robustlr(str(config), "--out", str(tmp_path / "reference"))
    rng = random.Random(os.getpid())
    killed_run = tmp_path / "killed"
    process = _robustlr(str(config), "--out", str(killed_run))
    interrupted: list[str] = []
    for _ in range(TRIALS):  # one kill inside each trial, at a random epoch and step
        interrupted.append(_kill_after_checkpoint(process, killed_run, skip=set(interrupted),
                                                  epoch=rng.randint(1, EPOCHS - 2), rng=rng))
        process = _robustlr("--resume", str(killed_run))
    assert process.wait() == 0, process.stderr.read()
    assert reference.wait() == 0, reference.stderr.read()

    assert len(set(interrupted)) == TRIALS
    log = (killed_run / "run.log").read_text()
    assert log.count("trial resumed after epoch") == TRIALS  # from checkpoints, not from scratch
    summaries, rows = _results(killed_run)
    expected_summaries, expected_rows = _results(tmp_path / "reference")
    assert set(summaries) == set(interrupted)
    for trial, summary in expected_summaries.items():
        assert summaries[trial] == summary, trial
    assert rows == expected_rows
    assert not list(killed_run.glob("trials/*/resume/*"))  # finished trials drop checkpoints


def _parts(seed: int) -> checkpoint.Parts:
    from robustlr.regimes import REGIMES
    from robustlr.training.recipe import Recipe

    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    return checkpoint.Parts(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                            regime=REGIMES.build("standard"), recipe=Recipe(device=torch.device("cpu")),
                            generator=torch.Generator().manual_seed(seed), device=torch.device("cpu"))


def test_a_torn_checkpoint_falls_back_to_the_one_before(tmp_path):
    parts = _parts(0)
    writer = checkpoint.Writer(tmp_path)
    for epoch in (1, 2, 3):
        with torch.no_grad():
            parts.model.weight.fill_(epoch)
        writer.save(epoch=epoch, parts=parts, progress={"steps": epoch}, key="k")
    writer.wait()
    assert [p.name for p in checkpoint.checkpoints(tmp_path)] == ["epoch-00003.pt", "epoch-00002.pt"]
    latest = tmp_path / "epoch-00003.pt"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])  # torn mid-write

    state = checkpoint.load(tmp_path, key="k")
    assert state["epoch"] == 2 and state["progress"] == {"steps": 2}
    fresh = _parts(1)
    checkpoint.restore(state, fresh)
    assert torch.equal(fresh.model.weight, torch.full((2, 3), 2.0))
    assert checkpoint.load(tmp_path, key="another config") is None


def test_restoring_a_checkpoint_restores_every_random_stream(tmp_path):
    import random as python_random

    import numpy as np

    parts = _parts(0)
    writer = checkpoint.Writer(tmp_path)
    writer.save(epoch=1, parts=parts, progress={}, key="k")
    writer.wait()
    draws = (torch.rand(3), np.random.rand(3), python_random.random(),
             torch.randperm(10, generator=parts.generator))
    checkpoint.restore(checkpoint.load(tmp_path, key="k"), parts)
    again = (torch.rand(3), np.random.rand(3), python_random.random(),
             torch.randperm(10, generator=parts.generator))
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1])
    assert draws[2] == again[2] and torch.equal(draws[3], again[3])


class _Interrupted(Exception):
    pass


def _interrupt_after_checkpoint(monkeypatch, epoch: int) -> None:
    """Make the trial die right after it has written its checkpoint of ``epoch``."""
    save = checkpoint.Writer.save

    def saving_then_dying(self, *, epoch: int, **kwargs):
        save(self, epoch=epoch, **kwargs)
        if epoch == stop_at:
            self.wait()
            raise _Interrupted

    stop_at = epoch
    monkeypatch.setattr(checkpoint.Writer, "save", saving_then_dying)


@pytest.mark.parametrize("regime, status", [
    ("dp(noise_multiplier=1.0, max_epsilon=4.0)", "budget_exhausted"),  # the guard's state
    ("dp(target_epsilon=3.0, noise_schedule='linear(final=0.5)', clip_schedule='cosine')", "ok"),
    ("dp(noise_multiplier=0.8, clip_schedule='cosine')", "ok")])  # no cap: the noise history
def test_a_dp_trial_resumed_from_its_checkpoint_spends_the_same_epsilon(tmp_path, monkeypatch,
                                                                          regime, status):
    from robustlr import data, experiment
    from robustlr.grid import expand
    from robustlr.training.loop import train_trial

    config = experiment.from_mapping(tiny(
        data={"synthetic": {"num_examples": 240, "num_classes": 3, "shape": [1, 8, 8]}},
        model={"name": "cnn", "norm": "group", "width": 8, "hidden": 16},
        schedules=["cosine"], regimes=[regime],
        train={"epochs": 6, "batch_size": 24, "checkpoint_every": 1}))
    (trial,), bundle = expand(config), data.prepare(config.data, seed=0)
    expected_rows: list[dict] = []
    expected = train_trial(config, trial, bundle, on_epoch=expected_rows.append,
                           trial_dir=tmp_path / "reference")
    assert expected["status"] == status
    stop_at = max(1, expected["epochs"] - 2)
    with monkeypatch.context() as patch:
        _interrupt_after_checkpoint(patch, stop_at)
        with pytest.raises(_Interrupted):
            train_trial(config, trial, bundle, on_epoch=lambda row: None,
                        trial_dir=tmp_path / "killed")
    rows: list[dict] = []
    resumed = train_trial(config, trial, bundle, on_epoch=rows.append, trial_dir=tmp_path / "killed")

    def without_timing(record: dict) -> dict:  # NaN (a DP trial's train_loss) equal to NaN
        return {k: None if isinstance(v, float) and math.isnan(v) else v
                for k, v in record.items() if not _is_timing(k)}

    assert resumed["dp_steps"] > 0 and resumed["epochs"] > stop_at  # it trained after resuming
    assert without_timing(resumed) == without_timing(expected)
    assert [without_timing(r) for r in rows] == [without_timing(r) for r in expected_rows]
