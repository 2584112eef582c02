"""Overhead of robustlr's training loop against bare hand-written torch loops doing the same.

Three scenarios, each with the same model, data, batch order, schedule (cosine, applied per
step) and per-epoch evaluation (validation and test accuracy) in both loops:

- ``plain``: digits, cnn, in-memory batches.                        Target: ours / bare <= 1.10
- ``augment``: CIFAR-shaped synthetic data, in-memory, random crop (padding 4) + horizontal
  flip on the device per batch.                                      Target: ours / bare <= 1.10
- ``stream``: the same data streamed through a DataLoader with the torchvision.transforms.v2
  crop + flip per example, against a plain DataLoader loop.           Target: ours / bare <= 1.15

One thread; the two loops of a scenario alternate in rotating order and the ratio of the
medians is reported (absolute seconds mean little on a shared machine).

    python benchmarks/bench_loop.py [--scenario all] [--epochs 3] [--repeats 5] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable

import _harness
import torch
from torch.nn import functional as F  # noqa: N812
from torch.utils.data import DataLoader, Dataset

from robustlr import data, experiment, models
from robustlr.grid import expand
from robustlr.training.loop import train_trial

TARGETS = {"plain": 1.10, "augment": 1.10, "stream": 1.15}
CIFAR_SHAPED = {"name": "synthetic", "val_fraction": 0.1, "test_fraction": 0.1,
                "synthetic": {"num_examples": 2000, "num_classes": 10, "shape": [3, 32, 32]}}


def crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop + flip of a batch, written directly in torch (the bare loop's version)."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


class Items(Dataset):
    """The training arrays one example at a time, through ``transform`` (the bare streamed loop)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int):
        return self.transform(self.x[index]), int(self.y[index])


def _batches(name: str, config, bundle, generator: torch.Generator):
    x, y = bundle.train
    batch = config.train.batch_size
    if name == "stream":
        from torchvision.transforms import v2

        transform = v2.Compose([v2.RandomCrop((32, 32), padding=4), v2.RandomHorizontalFlip()])
        yield from DataLoader(Items(x, y, transform), batch_size=batch, shuffle=True,
                              generator=generator, num_workers=config.data.workers,
                              persistent_workers=config.data.workers > 0)
        return
    for index in torch.randperm(len(y), generator=generator).split(batch):
        xb = x[index]
        yield (crop_flip(xb, generator) if name == "augment" else xb), y[index]


def bare_loop(name: str, config, bundle, seed: int) -> float:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = models.build(config.model, input_shape=bundle.input_shape,
                         num_classes=bundle.num_classes, mean=bundle.mean, std=bundle.std)
    train = config.train
    optimizer = torch.optim.SGD(model.parameters(), lr=train.lr, momentum=train.momentum,
                                weight_decay=train.weight_decay)
    total = train.epochs * math.ceil(len(bundle.train[1]) / train.batch_size)
    step = 0
    for _ in range(train.epochs):
        model.train()
        for xb, yb in _batches(name, config, bundle, generator):
            for group in optimizer.param_groups:
                group["lr"] = train.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            step += 1
        model.eval()
        with torch.no_grad():
            for split_x, split_y in (bundle.val, bundle.test):
                (model(split_x).argmax(1) == split_y).float().mean().item()
    return loss.item()


def scenario(name: str, epochs: int, workers: int):
    """(config, bundle for the bare loop, bundle for robustlr) of scenario ``name``."""
    data_section = {"name": "digits"} if name == "plain" else dict(CIFAR_SHAPED)
    if name != "plain":
        data_section["augment"] = ["random_crop(padding=4)", "hflip"]
    if name == "stream":
        data_section.update(stream=True, workers=workers)
    config = experiment.from_mapping({
        "name": f"bench-loop-{name}", "data": data_section,
        "model": "cnn" if name == "plain" else {"name": "cnn", "width": 16, "hidden": 64},
        "train": {"epochs": epochs, "batch_size": 64, "lr": 0.05, "momentum": 0.9,
                  "weight_decay": 5e-4, "device": "cpu"},
        "schedules": ["cosine"]})
    ours = data.prepare(config.data, seed=0)
    bare = data.prepare(config.data.model_copy(update={"stream": False}), seed=0)
    return config, bare, ours


def runners(name: str, config, bare, ours) -> dict[str, Callable[[], object]]:
    trial = expand(config)[0]
    return {"robustlr": lambda: train_trial(config, trial, ours, on_epoch=lambda row: None),
            "bare": lambda: bare_loop(name, config, bare, trial.seed)}


def measure(runners: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    for run in runners.values():  # warm-up: allocator, kernels, worker start-up code paths
        run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    order = list(runners)
    for repeat in range(repeats):
        for name in _harness.rotated(order, repeat):
            started = time.perf_counter()
            runners[name]()
            times[name].append(time.perf_counter() - started)
    return _harness.medians(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["all", *TARGETS], default="all")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (stream)")
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for name in TARGETS if args.scenario == "all" else [args.scenario]:
        medians = measure(runners(name, *scenario(name, args.epochs, args.workers)), args.repeats)
        ratio = medians["robustlr"] / medians["bare"]
        results[name] = {"seconds": medians, "ratio_robustlr_over_bare": ratio,
                         "target": TARGETS[name]}
        print(f"{name:8s} bare {medians['bare']:.3f} s  robustlr {medians['robustlr']:.3f} s  "
              f"ratio {ratio:.3f} (target <= {TARGETS[name]:.2f})", flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"epochs": args.epochs, "repeats": args.repeats, "workers": args.workers,
                       "scenarios": results}, handle, indent=2)


if __name__ == "__main__":
    main()
