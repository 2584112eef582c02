"""DP-SGD step cost per grad_sample_mode on robustlr's own models and on users' models,
relative to a plain step.

The models are those the DP regime trains: ``robustlr.models.build`` then ``fix_model``
(BatchNorm becomes GroupNorm): the cnn on digits (1x8x8) and on 3x32x32, ResNet-18 at 32x32
and PreAct ResNet-18 when the registry has it; and two users' MNIST networks passed the way
a user passes them, as a factory spec (``"user_models:tanh_cnn"``, :mod:`user_models`:
Tramer & Boneh 2021's tanh CNN, Wong et al. 2020's ReLU net of 4x4 stride-2 convolutions)
on 1x28x28 inputs at batch 256 and 2048. Each DP mode is compared with the plain
(non-private) step of the same model on the same batch.

Time: every mode steps its own copy of the model in one process, one torch thread, in
rotating order; the median over rounds is reported as a ratio to the plain step (absolute
seconds mean little on a shared machine): "x time" of wall-clock time, "x cpu" of the
process's CPU time, which other processes on the same cores disturb less. Memory: each mode
runs in a fresh child process that reads its own ``VmHWM`` (``ru_maxrss`` would inherit the
parent's peak, docs/facts.md), two ways:
- "extra": the process's peak above an idle child that built the model and batch but took
  no step ("x extra": over the plain step's). Building the model peaks too (``fix_model``
  copies it), and a step's memory below that peak is not counted: for ResNet-18 the plain
  step's 45 MB of gradients mostly hide there, so this ratio overstates DP's share.
- "step": the peak during the two steps above the resident set just before them (the heap
  trimmed and the kernel's peak counter reset via ``/proc/self/clear_refs``), everything the
  steps allocate, first-step initialisation included ("x step": over the plain step's).
The children run with glibc's mmap threshold fixed at 64 KiB (``MALLOC_MMAP_THRESHOLD_``):
by default glibc raises the threshold after the first large free, so later tensors come
from the heap, whose extent depends on the order of allocations, and the same code's step
peak moved by up to 1.5x between runs (3x32x32 cnn, DP over plain: 1.08-1.62x). With the
threshold fixed, every tensor of 64 KiB or more is its own mapping, returned when freed, so
the resident peak is what the step keeps alive (three runs agree to 0.1 MB); it is the CPU
counterpart of ``torch.cuda.max_memory_allocated``.

    .venv/bin/python benchmarks/bench_dp.py [--rounds 3] [--models digits_cnn,tanh_cnn_256]
        [--modes plain,hooks,ghost,ghost_mixed,ghost_bk]
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import os
import subprocess
import sys
import time
import warnings

import _harness

_harness.setup()  # before numpy/torch load their thread pools

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robustlr import models
from robustlr.privacy import engine
from robustlr.privacy.grad_sample import modes as grad_sample_modes
from robustlr.privacy.grad_sample.modules import fix_model

warnings.filterwarnings("ignore")
# name: (model spec, input shape, batch, steps per timing, target DP/plain time)
MODELS = {
    "digits_cnn": ("cnn", (1, 8, 8), 128, 8, 1.6),
    "cifar_cnn": ("cnn", (3, 32, 32), 128, 1, 2.0),
    "resnet18": ("resnet18", (3, 32, 32), 8, 1, 3.0),
    "preact_resnet18": ("preact_resnet18", (3, 32, 32), 8, 1, 3.0),
    # users' models (issue 22): a factory spec, as a user's config names it
    "tanh_cnn_256": ("user_models:tanh_cnn", (1, 28, 28), 256, 4, 1.5),
    "tanh_cnn_2048": ("user_models:tanh_cnn", (1, 28, 28), 2048, 1, 1.5),
    "relu_mnist_256": ("user_models:relu_mnist", (1, 28, 28), 256, 4, 1.5),
    "relu_mnist_2048": ("user_models:relu_mnist", (1, 28, 28), 2048, 1, 1.5),
}
USER_MODELS = [name for name, row in MODELS.items() if ":" in row[0]]
# the plain step, then every mode the modes' table marks benchmarked, in the table's order
MODES = ("plain", *(name for name, row in grad_sample_modes.MODES.items() if row.benchmarked))
SLOW_ON_RESNETS = ("hooks",)  # 12-15x a plain step (docs/facts.md): minutes per round on CPU
MEMORY_TARGET = 1.5
# large tensors in mappings of their own, so that freed memory leaves the resident set
CHILD_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}


def build(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    spec, shape, batch = MODELS[name][:3]
    torch.manual_seed(0)
    model = models.build(spec, input_shape=shape, num_classes=10, mean=[0.5] * shape[0],
                         std=[0.25] * shape[0])
    model, _ = fix_model(model)  # what the DP regime trains (BatchNorm -> GroupNorm)
    return model, torch.rand(batch, *shape), torch.randint(0, 10, (batch,))


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str):
    """A zero-argument function doing one training step of ``mode`` on the fixed batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    if mode == "plain":
        def step():
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        return step
    private = engine.make_private(
        module=model, optimizer=optimizer, noise_multiplier=1.0, max_grad_norm=1.0,
        data_loader=DataLoader(TensorDataset(x, y), batch_size=len(y)),
        poisson_sampling=False, grad_sample_mode=mode)

    def dp_step():
        private.optimizer.zero_grad()
        private.criterion(private.module(x), y).backward()
        private.optimizer.step()
    return dp_step


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def child(name: str, mode: str, steps: int) -> None:
    """Run in a fresh process; print two figures (kB): the process's peak resident set
    (build included), and the peak during the steps above the resident set just before them
    (freed heap returned to the system and the kernel's peak counter reset first, so a
    build-time peak, e.g. fix_model's copy of the model, cannot hide the step's memory)."""
    torch.set_num_threads(1)
    model, x, y = build(name)
    step = make_step(model, x, y, "plain" if mode == "idle" else mode)
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the figure may then be an underestimate
        pass
    build_peak = _status_kb("VmHWM")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset VmHWM to the current resident set
    before = _status_kb("VmRSS")
    for _ in range(0 if mode == "idle" else steps):
        step()
    peak = _status_kb("VmHWM")
    print(max(build_peak, peak), peak - before)


def peak_kb(name: str, mode: str, steps: int) -> tuple[int, int]:
    """(peak of the whole process, peak of the steps above what was resident before them)."""
    out = subprocess.run([sys.executable, __file__, "--child", name, mode, str(steps)],
                         capture_output=True, text=True, check=True, env=CHILD_ENV)
    whole, steps_kb = out.stdout.strip().splitlines()[-1].split()
    return int(whole), int(steps_kb)


def time_modes(name: str, modes, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds per step of each mode: wall-clock, and this process's CPU time (less
    disturbed when other processes share the cores)."""
    base, x, y = build(name)
    steps = MODELS[name][3]
    fns, times, cpu = {}, {m: [] for m in modes}, {m: [] for m in modes}
    for mode in modes:
        fns[mode] = make_step(copy.deepcopy(base), x, y, mode)
        fns[mode]()  # warm-up
    order = list(fns)
    for r in range(rounds):
        for mode in _harness.rotated(order, r):
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                fns[mode]()
            times[mode].append((time.perf_counter() - start) / steps)
            cpu[mode].append((time.process_time() - start_cpu) / steps)
    return (_harness.medians(times),
            _harness.medians(cpu))


def report(name: str, modes, rounds: int) -> None:
    spec, shape, batch, _, target = MODELS[name]
    print(f"\n{name}: {spec} {shape}, batch {batch} (targets <= {target}x time, "
          f"<= {MEMORY_TARGET}x extra memory)")
    medians, cpu = time_modes(name, modes, rounds)
    idle = peak_kb(name, "idle", 0)[0]
    extras = {mode: peak_kb(name, mode, 2) for mode in medians}
    plain, plain_step = max(extras["plain"][0] - idle, 1), max(extras["plain"][1], 1)
    print(f"  {'mode':12s} {'ms/step':>9s} {'x time':>7s} {'x cpu':>6s} {'extra MB':>9s} "
          f"{'x extra':>8s} {'step MB':>8s} {'x step':>7s}")
    for mode, seconds in medians.items():
        extra, step = max(extras[mode][0] - idle, 1), max(extras[mode][1], 1)
        print(f"  {mode:12s} {seconds * 1e3:9.1f} {seconds / medians['plain']:7.2f} "
              f"{cpu[mode] / cpu['plain']:6.2f} {extra / 1024:9.1f} {extra / plain:8.2f} "
              f"{step / 1024:8.1f} {step / plain_step:7.2f}")

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"plain is always measured; {SLOW_ON_RESNETS} skipped on ResNets "
                             "unless --resnet-hooks")
    parser.add_argument("--resnet-hooks", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "MODE", "STEPS"))
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], int(args.child[2]))
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, default mode '{engine.DEFAULT_MODE}'")
    modes = ["plain"] + [m for m in args.modes.split(",") if m != "plain"]
    for name in args.models.split(","):
        if name not in USER_MODELS and MODELS[name][0] not in models.MODELS:
            print(f"\n{name}: skipped, robustlr.models.MODELS has no {MODELS[name][0]!r}")
            continue
        resnet = "resnet" in name and not args.resnet_hooks
        report(name, [m for m in modes if not (resnet and m in SLOW_ON_RESNETS)], args.rounds)


if __name__ == "__main__":
    main()
