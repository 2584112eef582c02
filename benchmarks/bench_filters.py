"""Poison filters vs ART's detectors on the same representations, against the floor.

The floor is one forward pass over the data to get penultimate representations, which every
filter needs and which dominates (docs/facts.md). For ~5,000 28x28 images and a small CNN this
script reports, side by side from one run:
- time: forward pass (floor), each filter's scoring, and end to end (forward + scoring) as a
  multiple of the floor, measured in one process in rotating order (median of rounds);
- memory: peak RSS (VmHWM) of a fresh subprocess per variant doing forward + scoring.

Run: ``.venv/bin/python benchmarks/bench_filters.py [--n 5000] [--rounds 3]``.
Targets: ours <= 1.10x the floor end to end, never slower than ART, peak memory <= ART's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import _harness

_harness.setup()  # before numpy/torch load their thread pools
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import torch
from torch import nn

from robustlr.attacks.filters import FILTERS, FilterInputs
from robustlr.attacks.filters.representations import penultimate

VARIANTS = ("spectral", "art_spectral", "activation_clustering", "art_activation")


def setup(n: int):
    """Seeded 28x28 inputs with 10 classes and a small CNN (128-d penultimate layer)."""
    torch.manual_seed(0)
    labels = torch.randint(0, 10, (n,))
    x = (torch.rand(n, 1, 28, 28) * 0.3 + labels.view(-1, 1, 1, 1) / 10).clamp(0, 1)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10)).eval()
    return x, labels, model


def run_filter(name: str, features: torch.Tensor, labels: torch.Tensor) -> None:
    FILTERS[name]().fit_predict(FilterInputs(labels, 10, features=features, expected_rate=0.04))


def peak_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))


def child(name: str, n: int) -> None:
    """One fresh process: forward pass, then the filter (or nothing, for the floor)."""
    torch.set_num_threads(1)
    x, labels, model = setup(n)
    features = penultimate(model, x)
    if name != "floor":
        run_filter(name, features, labels)
    print(json.dumps({"peak_mib": peak_kib() / 1024}))


def timings(n: int, rounds: int) -> dict[str, float]:
    torch.set_num_threads(1)
    x, labels, model = setup(n)
    features = penultimate(model, x)
    for name in VARIANTS:  # warm-up: imports (ART's are heavy) and first-call costs
        run_filter(name, features, labels)
    times: dict[str, list[float]] = {name: [] for name in ("floor",) + VARIANTS}
    for r in range(rounds):
        order = ("floor",) + VARIANTS
        for name in _harness.rotated(order, r):
            start = time.perf_counter()
            if name == "floor":
                penultimate(model, x)
            else:
                run_filter(name, features, labels)
            times[name].append(time.perf_counter() - start)
    return _harness.medians(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.n)
    seconds = timings(args.n, args.rounds)
    peaks = {}
    for name in ("floor",) + VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--child", name, "--n", str(args.n)],
                             capture_output=True, text=True, check=True).stdout
        peaks[name] = json.loads(out.strip().splitlines()[-1])["peak_mib"]
    floor = seconds["floor"]
    print(f"n={args.n}, 1 thread, floor (forward pass) {floor:.3f} s, peak {peaks['floor']:.0f} MiB")
    print(f"{'filter':24s}{'scoring s':>10s}{'end-to-end / floor':>20s}{'peak MiB':>10s}")
    for name in VARIANTS:
        print(f"{name:24s}{seconds[name]:10.3f}{(floor + seconds[name]) / floor:20.3f}"
              f"{peaks[name]:10.0f}")
    for ours, art in (("spectral", "art_spectral"), ("activation_clustering", "art_activation")):
        print(f"{ours} vs {art}: time {seconds[ours] / seconds[art]:.2f}x, "
              f"peak {peaks[ours] / peaks[art]:.2f}x")


if __name__ == "__main__":
    main()
