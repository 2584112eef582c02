"""robustlr at real scale on CIFAR-shaped synthetic data (3x32x32, 10 classes): throughput of
robustlr's loop against a bare torch loop doing the same (model, precision, channels-last,
on-device crop+flip, SGD with a per-step cosine), a PGD-10 AT epoch over a clean epoch, a DP
step over a non-private step (both fp32: dp clips in fp32 only), and peak memory of each.

Everything runs with ``device: auto`` (CUDA when present). Ratios are measured side by side
in one process, rotating order, medians over ``--repeats``; throughput counts training steps
only (robustlr's ``samples_per_second`` excludes evaluation; the bare loop evaluates nothing).
Targets: robustlr / bare <= 1.05 at ResNet-18 bf16 channels-last on a GPU.

    python benchmarks/bench_gpu.py [--models resnet18,wrn] [--precision bf16] [--channels-last]
                                   [--examples 10000] [--batch 128] [--repeats 3] [--out r.json]
    python benchmarks/bench_gpu.py --small     # a CPU-sized run (the tests use it)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import _harness
import torch

from robustlr import data as data_module
from robustlr import experiment, models
from robustlr.data import augment
from robustlr.distributed import resolve_device
from robustlr.grid import Trial
from robustlr.training.loop import train_trial
from robustlr.training.recipe import Recipe

AUGMENT = ["random_crop(padding=4)", "hflip"]
MODEL_SPECS = {"resnet18": "resnet18", "wrn": {"name": "wrn", "depth": 28, "width": 10},
               "cnn": "cnn"}


def make_config(args, model: str, regime: str = "standard", epochs: int = 1,
                precision: str | None = None):
    return experiment.from_mapping({
        "name": "bench-gpu", "model": MODEL_SPECS[model],
        # no validation split and a small test split: throughput counts training only
        "data": {"name": "synthetic", "val_fraction": 0.0, "test_fraction": 0.1 if args.small else 0.01,
                 "augment": AUGMENT,
                 "synthetic": {"num_examples": args.examples, "num_classes": 10,
                               "shape": [3, 32, 32]}},
        "train": {"epochs": epochs, "batch_size": args.batch, "lr": 0.1, "momentum": 0.9,
                  "weight_decay": 5e-4, "precision": precision or args.precision,
                  "channels_last": args.channels_last, "compile": args.compile},
        "evaluation": {"batch_size": 4 * args.batch},
        "schedules": ["cosine"], "regimes": [regime]})


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    """Peak GPU memory since the last reset; None on CPU (a process-wide peak would mix the
    phases: read /usr/bin/time -v for it)."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def robustlr_run(config, bundle, device: torch.device) -> dict[str, float]:
    trial = Trial("cosine", str(config.regimes[0]), 1.0, 0)
    _peak_reset(device)
    summary = train_trial(config, trial, bundle, on_epoch=lambda row: None)
    _synchronize(device)
    return {"images_per_second": summary["samples_per_second"],
            "seconds_per_step": summary["train_seconds"] / max(summary["steps"], 1),
            "epoch_seconds": summary["train_seconds"] / summary["epochs"],
            "peak_gib": _peak_gib(device)}


def bare_run(config, bundle, device: torch.device) -> dict[str, float]:
    """The same training written by hand: what robustlr's loop is compared with."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    train = config.train
    model = models.build(config.model, input_shape=bundle.input_shape,
                         num_classes=bundle.num_classes, mean=bundle.mean, std=bundle.std).to(device)
    recipe = Recipe.from_config(train, device)
    if train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if train.compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=train.lr, momentum=train.momentum,
                                weight_decay=train.weight_decay)
    augmentation = augment.build(config.data.augment, input_shape=bundle.input_shape)
    x, y = (t.to(device) for t in bundle.train)
    total = train.epochs * math.ceil(len(y) / train.batch_size)
    scaler = recipe.scaler
    _peak_reset(device)
    _synchronize(device)
    started, step = time.perf_counter(), 0
    model.train()
    for _ in range(train.epochs):
        for index in torch.randperm(len(y), generator=generator).to(device).split(train.batch_size):
            for group in optimizer.param_groups:
                group["lr"] = train.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            batch = augmentation(x[index], generator) if augmentation is not None else x[index]
            batch = recipe.inputs(batch)
            optimizer.zero_grad(set_to_none=True)
            with recipe.autocast():
                loss = torch.nn.functional.cross_entropy(step_model(batch), y[index])
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            step += 1
    _synchronize(device)
    seconds = time.perf_counter() - started
    return {"images_per_second": train.epochs * len(y) / seconds,
            "seconds_per_step": seconds / step, "peak_gib": _peak_gib(device)}


def _median(runs: list[dict[str, float]]) -> dict[str, float | None]:
    return {key: (statistics.median(r[key] for r in runs) if runs[0][key] is not None else None)
            for key in runs[0]}


def measure(args, model: str, device: torch.device) -> dict[str, Any]:
    """robustlr vs bare loop, PGD-10 AT vs clean, DP vs non-private, for one model."""
    clean = make_config(args, model)
    bundle = data_module.prepare(clean.data, seed=0)
    pgd = make_config(args, model, f"pgd_at(eps={8 / 255}, steps={args.pgd_steps}, "
                                   f"step_size={2 / 255})")
    # dp clips per-sample gradients in fp32 only: compared with a non-private fp32 step
    private = make_config(args, model, "dp(noise_multiplier=1.0, max_grad_norm=1.0)",
                          precision="fp32")
    plain32 = make_config(args, model, precision="fp32")
    runners = {"bare": lambda: bare_run(clean, bundle, device),
               "robustlr": lambda: robustlr_run(clean, bundle, device),
               "pgd_at": lambda: robustlr_run(pgd, bundle, device),
               "dp": lambda: robustlr_run(private, bundle, device),
               "plain_fp32": lambda: robustlr_run(plain32, bundle, device)}
    if args.precision == "fp32":
        runners.pop("plain_fp32")
    for run in runners.values():  # warm-up: kernels, autotuning, compilation
        run()
    results: dict[str, list] = {name: [] for name in runners}
    order = list(runners)
    for repeat in range(args.repeats):
        for name in _harness.rotated(order, repeat):
            results[name].append(runners[name]())
    m = {name: _median(runs) for name, runs in results.items()}
    return {
        "model": model, "per_phase": m,
        "images_per_second": {"robustlr": m["robustlr"]["images_per_second"],
                              "bare": m["bare"]["images_per_second"]},
        "ratio_robustlr_over_bare": m["bare"]["images_per_second"] / m["robustlr"]["images_per_second"],
        "ratio_pgd_at_epoch_over_clean_epoch": m["pgd_at"]["epoch_seconds"] / m["robustlr"]["epoch_seconds"],
        "ratio_dp_step_over_plain_step": (m["dp"]["seconds_per_step"]
                                          / m.get("plain_fp32", m["robustlr"])["seconds_per_step"]),
        "peak_gib": {name: m[name]["peak_gib"] for name in m}}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=None, help="comma-separated: resnet18, wrn, cnn")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--examples", type=int, default=None)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", action="store_true",
                        help="CPU-sized: the cnn, 160 examples, batch 32, 1 repeat")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.small:
        args.models = args.models or "cnn"
        args.examples, args.batch = args.examples or 160, 32
        args.repeats, args.precision = 1, args.precision or "bf16"
        args.channels_last = True
    args.models = (args.models or "resnet18,wrn").split(",")
    args.examples = args.examples or 10_000
    args.precision = args.precision or "bf16"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    device = resolve_device("auto")
    if device.type == "cpu":
        torch.set_num_threads(1)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "precision": args.precision, "channels_last": args.channels_last,
              "compile": args.compile, "augment": AUGMENT, "batch": args.batch,
              "examples": args.examples, "pgd_steps": args.pgd_steps, "repeats": args.repeats,
              "models": [measure(args, model, device) for model in args.models]}
    for entry in result["models"]:
        print(f"{entry['model']:>9} on {result['device']}: robustlr "
              f"{entry['images_per_second']['robustlr']:.0f} img/s, bare "
              f"{entry['images_per_second']['bare']:.0f} img/s (ratio "
              f"{entry['ratio_robustlr_over_bare']:.3f}); PGD-{args.pgd_steps} AT epoch / clean "
              f"{entry['ratio_pgd_at_epoch_over_clean_epoch']:.2f}; DP step / plain "
              f"{entry['ratio_dp_step_over_plain_step']:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
