"""Wall time of one grid on 1 and 2 workers, for the local process pool and for Ray.

The grid (digits, the small CNN, N trials of a few seconds) runs through ``run_grid`` into a
scratch database, without the exports and report, once per backend and worker count; the
local pool first, then a local Ray started with ``num_cpus`` = workers. Ray's start is timed
apart and left out of the grid times. Its first grid ("cold") includes starting the workers,
each of which imports robustlr; the next ("warm") reuses them. One torch thread per trial.

Targets, on 2 otherwise idle cores: speed-up (1 worker / 2 workers) >= 1.6 for both
backends; warm Ray / local at equal workers <= 1.15.

    .venv/bin/python benchmarks/bench_parallel.py [--epochs 3] [--repeats 1] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import _harness

_harness.setup()  # before numpy/torch load their thread pools

import torch

from robustlr import experiment
from robustlr.results.store import Store
from robustlr.runs.grid_runner import run_grid
from robustlr.runs.progress import Progress

SCHEDULES = ["constant", "cosine", "linear", "step(milestones=[0.5], gamma=0.1)"]


def grid_seconds(config, backend: str, workers: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "results.sqlite")
        started = time.perf_counter()
        run_grid(config, Path(folder), store, workers=workers, save_models=False,
                 progress=Progress(enabled=False), backend=backend)
        seconds = time.perf_counter() - started
        bad = {k: v for k, v in store.counts().items() if k != "ok"}
        store.close()
    if bad:
        raise SystemExit(f"{backend} x{workers}: trials not ok: {bad}")
    return seconds


def measure_ray(config, workers: int, repeats: int) -> dict[str, float]:
    import ray

    started = time.perf_counter()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    start = time.perf_counter() - started
    try:
        cold = grid_seconds(config, "ray", workers)
        warm = statistics.median(grid_seconds(config, "ray", workers) for _ in range(repeats))
    finally:
        ray.shutdown()
    return {"start": start, "cold": cold, "warm": warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2, help="trials = 4 schedules x seeds")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1, help="warm grids per setting (median)")
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = experiment.from_mapping({
        "name": "bench-parallel", "data": {"name": "digits"}, "model": "cnn",
        "train": {"epochs": args.epochs, "batch_size": 64, "lr": 0.05, "momentum": 0.9},
        "schedules": SCHEDULES, "seeds": list(range(args.seeds))})
    trials = len(SCHEDULES) * args.seeds
    local = {w: statistics.median(grid_seconds(config, "local", w) for _ in range(args.repeats))
             for w in (1, 2)}
    ray = {w: measure_ray(config, w, args.repeats) for w in (1, 2)}
    result = {
        "trials": trials, "epochs": args.epochs, "cores": os.cpu_count(),
        "local_seconds": local, "ray_seconds": ray,
        "speedup_local": local[1] / local[2],
        "speedup_ray_warm": ray[1]["warm"] / ray[2]["warm"],
        "speedup_ray_cold": ray[1]["cold"] / ray[2]["cold"],
        "ray_over_local_warm": {w: ray[w]["warm"] / local[w] for w in (1, 2)},
        "ray_over_local_cold": {w: ray[w]["cold"] / local[w] for w in (1, 2)},
        "targets": {"speedup": 1.6, "ray_over_local_warm": 1.15}}
    print(f"{trials} trials x {args.epochs} epochs, digits cnn, {os.cpu_count()} cores\n")
    print(f"{'workers':>7s} {'local s':>8s} {'ray start':>9s} {'ray cold':>8s} {'ray warm':>8s} "
          f"{'ray/local cold':>14s} {'ray/local warm':>14s}")
    for w in (1, 2):
        print(f"{w:7d} {local[w]:8.2f} {ray[w]['start']:9.2f} {ray[w]['cold']:8.2f} "
              f"{ray[w]['warm']:8.2f} {result['ray_over_local_cold'][w]:14.2f} "
              f"{result['ray_over_local_warm'][w]:14.2f}")
    print(f"\nspeed-up 1 -> 2 workers: local {result['speedup_local']:.2f}, "
          f"ray warm {result['speedup_ray_warm']:.2f}, ray cold {result['speedup_ray_cold']:.2f} "
          "(target >= 1.6)")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
