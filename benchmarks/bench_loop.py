"""Overhead of robustlr's training loop against a bare hand-written torch loop.

Same model, data, batch order, schedule (cosine, applied per step) and per-epoch evaluation
(validation and test accuracy); one thread; the two loops alternate in rotating order and the
ratio of the medians is reported. Target: ours / bare <= 1.10.

    python benchmarks/bench_loop.py [--epochs 5] [--repeats 5] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch

from robustlr import config as config_module
from robustlr import data, models
from robustlr.grid import expand
from robustlr.training.loop import train_trial


def bare_loop(config, bundle, seed: int) -> float:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = models.build(config.model, input_shape=bundle.input_shape,
                         num_classes=bundle.num_classes, mean=bundle.mean, std=bundle.std)
    train = config.train
    optimizer = torch.optim.SGD(model.parameters(), lr=train.lr, momentum=train.momentum,
                                weight_decay=train.weight_decay)
    x, y = bundle.train
    total = train.epochs * math.ceil(len(y) / train.batch_size)
    step = 0
    for _ in range(train.epochs):
        model.train()
        for index in torch.randperm(len(y), generator=generator).split(train.batch_size):
            for group in optimizer.param_groups:
                group["lr"] = train.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
            step += 1
        model.eval()
        with torch.no_grad():
            for split_x, split_y in (bundle.val, bundle.test):
                (model(split_x).argmax(1) == split_y).float().mean().item()
    return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = config_module.from_mapping({
        "name": "bench-loop", "data": {"name": "digits"}, "model": "cnn",
        "train": {"epochs": args.epochs, "batch_size": 64, "lr": 0.05, "momentum": 0.9,
                  "weight_decay": 5e-4},
        "schedules": ["cosine"]})
    bundle = data.prepare(config.data, seed=0)
    trial = expand(config)[0]
    runners = {"robustlr": lambda: train_trial(config, trial, bundle, on_epoch=lambda row: None),
               "bare": lambda: bare_loop(config, bundle, trial.seed)}
    for run in runners.values():  # warm-up: allocator and kernels
        run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    order = list(runners)
    for repeat in range(args.repeats):
        for name in order[repeat % 2:] + order[:repeat % 2]:
            started = time.perf_counter()
            runners[name]()
            times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {"epochs": args.epochs, "repeats": args.repeats, "seconds": medians,
              "ratio_robustlr_over_bare": medians["robustlr"] / medians["bare"], "target": 1.10}
    print(f"bare loop      {medians['bare']:.3f} s\nrobustlr loop  {medians['robustlr']:.3f} s\n"
          f"ratio          {result['ratio_robustlr_over_bare']:.3f} (target <= 1.10)")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
