"""Ratio benchmark: randomized-smoothing certification against its floor (a script, not a test).

The floor is what certification cannot avoid: n noisy forward passes per example, in batches of
the same size, drawing the same Gaussian noise. ``certify`` also draws n0 copies to pick the
class and computes a Clopper-Pearson bound per example; target <= 1.10 x the floor. Measured
side by side in one process with one thread, in rotating order, as a ratio of medians, on the
default digits ``cnn`` (untrained: the cost does not depend on the weights).

Usage: ``python benchmarks/bench_certify.py [--examples 10] [--n 2000] [--n0 20]
[--batch-size 1000] [--repeats 3] [--out bench.json]``
"""

from __future__ import annotations

import _harness

_harness.setup(force=True)  # before numpy/torch load their thread pools

import argparse
import json
import time
from pathlib import Path

import torch

from robustlr import data, models
from robustlr.attacks.certify import certify

SIGMA = 0.25


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=10)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--n0", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, _ = data.load("digits", split="test", seed=0)[:2]
    x = x[:args.examples]
    torch.manual_seed(0)
    model = models.build("cnn", input_shape=x.shape[1:], num_classes=10, mean=[0.3], std=[0.4]).eval()

    def floor() -> None:
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for example in x:
                for size in [args.batch_size] * (args.n // args.batch_size) + [args.n % args.batch_size]:
                    if size:
                        noise = torch.randn((size, *example.shape), generator=generator)
                        model(example.unsqueeze(0) + SIGMA * noise).argmax(1)

    def ours() -> None:
        certify(model, x, sigma=SIGMA, n0=args.n0, n=args.n, alpha=0.001,
                batch_size=args.batch_size, seed=0)

    methods = {"floor": floor, "certify": ours}
    timings: dict[str, list[float]] = {name: [] for name in methods}
    cpu: dict[str, list[float]] = {name: [] for name in methods}
    for repeat in range(args.repeats):
        order = list(methods) if repeat % 2 == 0 else list(reversed(methods))
        for name in order:
            started, cpu_started = time.perf_counter(), time.process_time()
            methods[name]()
            timings[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - cpu_started)
    medians = _harness.medians(timings)
    cpu_medians = _harness.medians(cpu)
    result = {"examples": len(x), "n": args.n, "n0": args.n0, "batch_size": args.batch_size,
              "seconds": timings, "ratio_certify_over_floor": medians["certify"] / medians["floor"],
              "seconds_per_example_per_10000_samples":
                  medians["certify"] / len(x) * 10_000 / (args.n + args.n0),
              # one thread: CPU time is what an idle core would take, whatever the machine's load
              "cpu_ratio_certify_over_floor": cpu_medians["certify"] / cpu_medians["floor"],
              "cpu_seconds_per_example_per_10000_samples":
                  cpu_medians["certify"] / len(x) * 10_000 / (args.n + args.n0)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
