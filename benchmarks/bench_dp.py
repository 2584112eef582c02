"""DP-SGD step cost per Opacus grad_sample_mode, relative to a plain SGD step.

Time: every mode steps the same model architecture on the same batch of 128 in one process,
one torch thread, in rotating order; the median over rounds is reported as a ratio to the
plain step. Memory: each mode runs in a fresh child process that reads its own ``VmHWM``
(``ru_maxrss`` would inherit the parent's peak, FINDINGS); "extra" is the peak above an idle
child that imported everything and built the model and batch but took no step.

    .venv/bin/python benchmarks/bench_dp.py [--rounds 3] [--steps N] [--models digits,cifar]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import warnings

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from robustlr.privacy import engine  # noqa: E402

warnings.filterwarnings("ignore")
BATCH = 128
MODES = ("plain",) + engine.GRAD_SAMPLE_MODES


def small_cnn(channels: int, side: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * (side // 2) ** 2, 64), nn.ReLU(), nn.Linear(64, 10))


MODELS = {"digits": (1, 8), "cifar": (3, 32)}
DEFAULT_STEPS = {"digits": 8, "cifar": 1}


def make_step(model_name: str, mode: str):
    """A zero-argument function doing one training step of ``mode`` on a fixed batch."""
    torch.manual_seed(0)
    channels, side = MODELS[model_name]
    model = small_cnn(channels, side)
    x, y = torch.rand(BATCH, channels, side, side), torch.randint(0, 10, (BATCH,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    if mode == "plain":
        def step():
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        return step
    private = engine.make_private(
        module=model, optimizer=optimizer, noise_multiplier=1.0, max_grad_norm=1.0,
        data_loader=DataLoader(TensorDataset(x, y), batch_size=BATCH),
        poisson_sampling=False, grad_sample_mode=mode)

    def dp_step():
        private.optimizer.zero_grad()
        private.criterion(private.module(x), y).backward()
        private.optimizer.step()
    return dp_step


def child(model_name: str, mode: str, steps: int) -> None:
    """Run in a fresh process: report the peak resident set (kB) after the steps."""
    torch.set_num_threads(1)
    step = make_step(model_name, mode if mode != "idle" else "plain")
    for _ in range(steps if mode != "idle" else 0):
        step()
    with open("/proc/self/status") as status:
        print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM")))


def peak_kb(model_name: str, mode: str, steps: int) -> int:
    out = subprocess.run([sys.executable, __file__, "--child", model_name, mode, str(steps)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def time_modes(model_name: str, modes, rounds: int, steps: int) -> dict[str, float]:
    fns, times = {}, {m: [] for m in modes}
    for mode in modes:
        try:
            fns[mode] = make_step(model_name, mode)
            fns[mode]()  # warm-up (and check the mode works for this model)
        except Exception as err:  # a mode Opacus cannot apply to this model
            print(f"  {mode}: unavailable ({type(err).__name__}: {str(err)[:80]})")
    order = list(fns)
    for r in range(rounds):
        for mode in order[r % len(order):] + order[:r % len(order)]:  # rotate the order
            start = time.perf_counter()
            for _ in range(steps):
                fns[mode]()
            times[mode].append((time.perf_counter() - start) / steps)
    return {m: statistics.median(t) for m, t in times.items() if t}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per timing (default: 8 digits, 1 cifar; ~2 min in all)")
    parser.add_argument("--models", default="digits,cifar")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "MODE", "STEPS"))
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], int(args.child[2]))
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, batch {BATCH}, 1 thread, default mode "
          f"'{engine.DEFAULT_MODE}'; targets: <= 2.5x time, <= 1.5x memory")
    for model_name in args.models.split(","):
        print(f"\nmodel {model_name} {MODELS[model_name]}:")
        steps = args.steps or DEFAULT_STEPS[model_name]
        medians = time_modes(model_name, MODES, args.rounds, steps)
        idle = peak_kb(model_name, "idle", 0)
        plain_extra = None
        print(f"  {'mode':10s} {'ms/step':>8s} {'x time':>7s} {'peak MB':>8s} "
              f"{'extra MB':>9s} {'x extra':>8s}")
        for mode, seconds in medians.items():
            peak = peak_kb(model_name, mode, 2)
            extra = max(peak - idle, 1)
            plain_extra = plain_extra or extra
            print(f"  {mode:10s} {seconds * 1e3:8.2f} {seconds / medians['plain']:7.2f} "
                  f"{peak / 1024:8.1f} {extra / 1024:9.1f} {extra / plain_extra:8.2f}")


if __name__ == "__main__":
    main()
