"""Cost of resume checkpoints (``train.checkpoint_every: 1``) against a training epoch, on the
digits cnn.

Two measures, side by side in one process, one thread, rotating order: (1) the whole trial
with a checkpoint after every epoch against the same trial without (ratio of medians); (2)
the time one checkpoint blocks the loop (serialising model, optimizer, every RNG and the
probes' state; the write, fsync and atomic rename run in a background thread, also timed)
against one epoch of that trial. Target: <= 3% of the epoch.

    python benchmarks/bench_checkpoint.py [--epochs 3] [--repeats 5] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import _harness
import torch

from robustlr import data, experiment
from robustlr.grid import expand
from robustlr.training import checkpoint
from robustlr.training.loop import train_trial
from robustlr.training.setup import prepare


def _config(epochs: int, every: int | None):
    return experiment.from_mapping({
        "name": "bench-checkpoint", "data": {"name": "digits"}, "model": "cnn",
        "train": {"epochs": epochs, "batch_size": 64, "lr": 0.05, "checkpoint_every": every},
        "schedules": ["cosine"]})


def _one_write(config, bundle, trial, directory: Path) -> tuple[float, float]:
    """Seconds the loop is blocked (serialisation), and until the file is durable."""
    prepared = prepare(config, bundle, regime_spec=trial.regime, seed=trial.seed, lr=0.05,
                       total_steps=lambda steps: steps)
    setup = prepared.setup
    parts = checkpoint.Parts(model=setup.model, optimizer=setup.optimizer,
                             regime=prepared.regime, recipe=prepared.recipe,
                             generator=setup.generator, device=setup.device)
    history = [{"epoch": e, "test_acc": 0.9, "train_loss": 0.1} for e in range(100)]
    writer = checkpoint.Writer(directory)
    started = time.perf_counter()
    writer.save(epoch=1, parts=parts, progress={"history": history}, key="bench")
    blocking = time.perf_counter() - started
    writer.wait()
    return blocking, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    plain, checkpointed = _config(args.epochs, None), _config(args.epochs, 1)
    bundle = data.prepare(plain.data, seed=0)
    trial = expand(plain)[0]
    times: dict[str, list[float]] = {"plain": [], "checkpointed": [], "write": [], "durable": [],
                                     "epoch": []}
    with tempfile.TemporaryDirectory() as folder:
        runners = {
            "plain": lambda: train_trial(plain, trial, bundle, on_epoch=lambda row: None),
            "checkpointed": lambda: train_trial(checkpointed, trial, bundle, on_epoch=lambda row: None,
                                                trial_dir=Path(folder) / "trial")}
        for run in runners.values():  # warm-up
            run()
        order = list(runners)
        for repeat in range(args.repeats):
            for name in _harness.rotated(order, repeat):
                started = time.perf_counter()
                summary = runners[name]()
                times[name].append(time.perf_counter() - started)
                if name == "plain":
                    times["epoch"].append(summary["train_seconds"] / summary["epochs"])
            blocking, durable = _one_write(plain, bundle, trial, Path(folder) / "writes")
            times["write"].append(blocking)
            times["durable"].append(durable)
    medians = _harness.medians(times)
    result = {"epochs": args.epochs, "repeats": args.repeats, "seconds": medians,
              "trial_ratio_checkpointed_over_plain": medians["checkpointed"] / medians["plain"],
              "write_share_of_epoch": medians["write"] / medians["epoch"], "target": 0.03}
    print(f"epoch (train)        {medians['epoch']:.3f} s\n"
          f"checkpoint (blocks)  {medians['write'] * 1000:.1f} ms "
          f"= {100 * result['write_share_of_epoch']:.2f}% of an epoch (target <= 3%)\n"
          f"until durable        {medians['durable'] * 1000:.1f} ms (fsync and rename, in the "
          f"background)\n"
          f"trial ratio          {result['trial_ratio_checkpointed_over_plain']:.3f} "
          f"(checkpoint every epoch / none)")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
