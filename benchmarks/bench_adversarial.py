"""Cost of adversarial-training epochs against a clean epoch, all in robustlr's own loop.

Same model (cnn), data (digits), batch size, batch order and schedule; regimes ``standard``,
``pgd_at(steps=K)`` and ``fgsm_rs``. One thread; the three alternate in rotating order and the
ratio of the median training seconds per epoch (the loop's ``train_seconds``, evaluation
excluded) is reported. Each PGD step costs one forward-backward with respect to the input, a
little less than a training step (docs/facts.md: c = 0.8-0.9), so the targets are:
PGD-K / clean <= K + 1 and FGSM-RS / clean <= 2.1.

    python benchmarks/bench_adversarial.py [--steps 7] [--epochs 1] [--repeats 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time

import _harness
import torch

from robustlr import data, experiment
from robustlr.grid import expand
from robustlr.training.loop import train_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=7, help="PGD steps of the adversarial regime")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    regimes = {"clean": "standard", "pgd": f"pgd_at(eps=0.1, steps={args.steps})",
               "fgsm_rs": "fgsm_rs(eps=0.1)"}
    config = experiment.from_mapping({
        "name": "bench-adversarial", "data": {"name": "digits"}, "model": "cnn",
        "train": {"epochs": args.epochs, "batch_size": 64, "lr": 0.05, "momentum": 0.9,
                  "weight_decay": 5e-4},
        "schedules": ["cosine"], "regimes": list(regimes.values())})
    bundle = data.prepare(config.data, seed=0)
    trials = {trial.regime: trial for trial in expand(config)}

    def epoch_seconds(name: str) -> float:
        summary = train_trial(config, trials[regimes[name]], bundle, on_epoch=lambda row: None)
        return summary["train_seconds"] / summary["epochs"]

    for name in regimes:  # warm-up: allocator and kernels
        epoch_seconds(name)
    times: dict[str, list[float]] = {name: [] for name in regimes}
    order = list(regimes)
    for repeat in range(args.repeats):
        for name in _harness.rotated(order, repeat):
            times[name].append(epoch_seconds(name))
    medians = _harness.medians(times)
    targets = {"pgd": args.steps + 1, "fgsm_rs": 2.1}
    ratios = {name: medians[name] / medians["clean"] for name in targets}
    result = {"steps": args.steps, "epochs": args.epochs, "repeats": args.repeats,
              "regimes": regimes, "seconds_per_epoch": medians, "ratios_over_clean": ratios,
              "targets": targets, "within_target": {k: ratios[k] <= targets[k] for k in targets},
              "threads": torch.get_num_threads(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(f"clean epoch         {medians['clean']:.3f} s")
    print(f"PGD-{args.steps} AT epoch      {medians['pgd']:.3f} s   ratio {ratios['pgd']:.2f} "
          f"(target <= {targets['pgd']})")
    print(f"FGSM-RS epoch       {medians['fgsm_rs']:.3f} s   ratio {ratios['fgsm_rs']:.2f} "
          f"(target <= {targets['fgsm_rs']})")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
