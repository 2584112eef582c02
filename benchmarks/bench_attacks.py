"""Ratio benchmark: native PGD against its floor, ART and torchattacks (a script, not a test).

Every ratio is measured side by side in one process with one thread, in rotating order, and
reported as a ratio of medians, so a busy machine shifts all methods alike:

- ours / floor, where the floor is k forward passes plus k input-gradient backward passes on
  the same model and batch (target <= 1.10);
- ART ``ProjectedGradientDescentPyTorch`` / ours (target >= 1.3 on the small CNN, >= 1.8 on
  ResNet-18: ART takes weight gradients too and round-trips through numpy);
- ours / ``torchattacks.PGD`` (target <= 1.05; skipped when torchattacks is not installed).

Usage: ``python benchmarks/bench_attacks.py [--repeats 3] [--no-resnet] [--out bench.json]``
"""

from __future__ import annotations

import _harness

_harness.setup(force=True)  # before numpy/torch load their thread pools

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustlr.attacks import pgd
from robustlr.attacks.art_adapters import art_classifier

EPS, STEP = 8 / 255, 2 / 255


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16 * 16, 64), nn.ReLU(), nn.Linear(64, 10))


def resnet18_32() -> nn.Module:
    """torchvision's ResNet-18 adapted to 32x32 inputs (3x3 stem, no max-pool)."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def methods(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            steps: int) -> dict[str, Callable[[], object]]:
    from art.attacks.evasion import ProjectedGradientDescentPyTorch

    def floor() -> None:
        for _ in range(steps):
            x_in = x.clone().requires_grad_(True)
            loss = nn.functional.cross_entropy(model(x_in), y)
            torch.autograd.grad(loss, x_in)

    art = ProjectedGradientDescentPyTorch(art_classifier(model, x), norm=np.inf, eps=EPS,
                                          eps_step=STEP, max_iter=steps, num_random_init=1,
                                          batch_size=len(x), verbose=False)
    table = {
        "floor": floor,
        "ours": lambda: pgd(model, x, y, eps=EPS, step_size=STEP, steps=steps),
        "art": lambda: art.generate(x.numpy(), y=y.numpy()),
    }
    try:
        import torchattacks
    except ImportError:
        return table
    ta = torchattacks.PGD(model, eps=EPS, alpha=STEP, steps=steps, random_start=True)
    table["torchattacks"] = lambda: ta(x, y)
    return table


def measure(name: str, model: nn.Module, batch: int, steps: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model.eval()
    x, y = torch.rand(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    table = methods(model, x, y, steps)
    names = list(table)
    times: dict[str, list[float]] = {n: [] for n in names}
    table["floor"]()  # warm-up; first-call costs of the others fall in one sample of the median
    for r in range(repeats):
        for n in _harness.rotated(names, r):
            start = time.perf_counter()
            table[n]()
            times[n].append(time.perf_counter() - start)
    median = _harness.medians(times)
    row = {"model": name, "batch": batch, "steps": steps, "repeats": repeats,
           "seconds": median, "ours_over_floor": median["ours"] / median["floor"],
           "art_over_ours": median["art"] / median["ours"]}
    if "torchattacks" in median:
        row["ours_over_torchattacks"] = median["ours"] / median["torchattacks"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="PGD steps on the small CNN")
    parser.add_argument("--batch", type=int, default=128, help="small-CNN batch")
    parser.add_argument("--resnet-steps", type=int, default=2)
    parser.add_argument("--resnet-batch", type=int, default=64)
    parser.add_argument("--no-resnet", action="store_true")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = [measure("small_cnn", small_cnn(), args.batch, args.steps, args.repeats)]
    if not args.no_resnet:
        rows.append(measure("resnet18", resnet18_32(), args.resnet_batch, args.resnet_steps,
                            args.repeats))
    targets = {"ours_over_floor": "<= 1.10", "art_over_ours": ">= 1.3 / 1.8",
               "ours_over_torchattacks": "<= 1.05"}
    print(f"{'model':<10} {'batch':>5} {'k':>3} {'ours s':>8} " +
          " ".join(f"{k:>22}" for k in targets))
    for row in rows:
        ratios = " ".join(f"{row.get(k, float('nan')):>22.3f}" for k in targets)
        print(f"{row['model']:<10} {row['batch']:>5} {row['steps']:>3} "
              f"{row['seconds']['ours']:>8.3f} {ratios}")
    print("targets: " + ", ".join(f"{k} {v}" for k, v in targets.items()))
    if args.out:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads()}
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
