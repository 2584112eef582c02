"""Ratio benchmark: standard AutoAttack through robustlr against pyautoattack called directly
(a script, not a test), and the cost of a full standard run per 1,000 examples on CPU.

Both run on the same default digits ``cnn`` (trained briefly), the same examples and eps, one
thread, in rotating order; the ratios are of medians, of wall clock and of process CPU time
(target <= 1.05: robustlr's wrapping, the split into per-attack cascade stages, adds nothing
measurable). Both also report the robust accuracy they reached (they must agree). Absolute
wall seconds depend on the machine's load; CPU seconds are what an idle core would take.

Usage: ``python benchmarks/bench_autoattack.py [--examples 32] [--repeats 2] [--eps 0.1]
[--out bench.json]``
"""

from __future__ import annotations

import _harness

_harness.setup(force=True)  # before numpy/torch load their thread pools

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from robustlr import data, models
from robustlr.attacks import AutoAttack, cascade, expand_stages


def digits_cnn(epochs: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The default model on digits, trained with plain SGD for a few epochs."""
    x, y = data.load("digits", split="train", seed=0)[:2]
    x_test, y_test = data.load("digits", split="test", seed=0)[:2]
    mean = x.mean(dim=(0, 2, 3)).tolist()
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    torch.manual_seed(0)
    model = models.build("cnn", input_shape=x.shape[1:], num_classes=10, mean=mean, std=std)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(y)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval(), x_test, y_test


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from pyautoattack import AutoAttack as Reference

    model, x, y = digits_cnn(args.epochs)
    x, y = x[:args.examples], y[:args.examples]
    attack = AutoAttack(eps=args.eps, seed=0)
    accuracy: dict[str, float] = {}

    def ours() -> None:
        steps = expand_stages([("autoattack", attack)])
        accuracy["robustlr"] = cascade(model, x, y, steps, batch_size=len(y)).robust_acc

    def direct() -> None:
        reference = Reference(model, norm="Linf", eps=args.eps, version="standard", seed=0)
        x_adv, _ = reference.run_standard_evaluation(x, y, batch_size=len(y))
        with torch.no_grad():
            accuracy["pyautoattack"] = (model(x_adv).argmax(1) == y).float().mean().item()

    timings: dict[str, list[float]] = {"robustlr": [], "pyautoattack": []}
    cpu: dict[str, list[float]] = {"robustlr": [], "pyautoattack": []}
    methods = {"robustlr": ours, "pyautoattack": direct}
    for repeat in range(args.repeats):
        order = list(methods) if repeat % 2 == 0 else list(reversed(methods))
        for name in order:
            started, cpu_started = time.perf_counter(), time.process_time()
            methods[name]()
            timings[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - cpu_started)
    medians = _harness.medians(timings)
    cpu_medians = _harness.medians(cpu)
    result = {"examples": len(y), "eps": args.eps, "clean_acc": cascade(model, x, y, []).clean_acc,
              "robust_acc": accuracy, "seconds": timings,
              "ratio_robustlr_over_pyautoattack": medians["robustlr"] / medians["pyautoattack"],
              "seconds_per_1000_examples": 1000 * medians["robustlr"] / len(y),
              # one thread: CPU time is what an idle core would take, whatever the machine's load
              "cpu_seconds": cpu,
              "cpu_ratio_robustlr_over_pyautoattack": cpu_medians["robustlr"] / cpu_medians["pyautoattack"],
              "cpu_seconds_per_1000_examples": 1000 * cpu_medians["robustlr"] / len(y)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
