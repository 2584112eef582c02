"""The LR range test (Smith 2017, "Cyclical learning rates", section 3.3).

One short run whose LR grows exponentially from ``min_lr`` to ``max_lr``, one LR per optimizer
step, under the config's model, optimizer and regime. The loss is smoothed (an exponential
moving average with bias correction, as fastai's ``lr_find``, but weighting the past 0.9
rather than 0.98: over 100 steps a 50-step lag shifts the suggestion past the minimum) and the
sweep stops once it diverges. Under an adversarial regime the loss recorded is the regime's own training loss on
attacked inputs (the robust loss); under DP it is the clipped, private loss and each step also
records the fraction of per-sample gradients that clipping cut, since a sweep whose clipped
fraction is 1 throughout says the clipping bound, not the LR, sets the update size.

The suggestion is the LR of the steepest descent of the smoothed loss (in log LR) before its
minimum; the minimum-loss LR divided by 10 is reported beside it. Under DP the suggestion is
at most that tenth: clipping bounds every update, so the private loss keeps falling almost to
the point of divergence and its steepest descent sits at the edge (digits cnn, sigma 1, clip 1:
steepest 0.76 trained to 56% in 4 epochs; the best of a coarse grid, 0.1, to 80%; a tenth of
the minimum-loss LR, 0.15, to within a few points of it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from robustlr.config import ExperimentConfig
from robustlr.modes import training
from robustlr.privacy.diagnostics import per_sample_norms
from robustlr.regimes import Regime, TrainingSetup
from robustlr.training.setup import backward, begin_step, prepare


@dataclass(frozen=True)
class Sweep:
    min_lr: float = 1e-5
    max_lr: float = 10.0
    steps: int = 100
    smoothing: float = 0.9  # EMA weight of the past (a lag of ~10 steps); 0: the raw loss
    diverge_factor: float = 4.0  # stop once the smoothed loss exceeds this x its minimum

    def __post_init__(self) -> None:
        if not (0 < self.min_lr < self.max_lr):
            raise ValueError(f"--min-lr/--max-lr: need 0 < min-lr < max-lr, got "
                             f"{self.min_lr:g} and {self.max_lr:g}")
        if self.steps < 10:
            raise ValueError(f"--steps: at least 10 steps, got {self.steps}")
        if not (0 <= self.smoothing < 1):
            raise ValueError(f"--smoothing: must be in [0, 1), got {self.smoothing:g}")
        if self.diverge_factor <= 1:
            raise ValueError(f"--diverge-factor: must be above 1, got {self.diverge_factor:g}")

    def lr(self, step: int) -> float:
        return self.min_lr * (self.max_lr / self.min_lr) ** (step / (self.steps - 1))


@dataclass
class RangeTest:
    regime: str
    loss_kind: str  # "clean", "robust" or "private"
    sweep: Sweep
    rows: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = "completed"  # or "diverged"
    suggested_lr: float | None = None
    min_loss_lr: float | None = None
    epsilon: float | None = None  # privacy the sweep itself spent on the training data

    def summary(self) -> dict[str, Any]:
        return {"regime": self.regime, "loss_kind": self.loss_kind, "stopped": self.stopped,
                "steps_taken": len(self.rows), "suggested_lr": self.suggested_lr,
                "min_loss_lr": self.min_loss_lr,
                "min_loss_lr_over_10": self.min_loss_lr / 10 if self.min_loss_lr else None,
                "epsilon_spent": self.epsilon,
                # the sweep's steps are DP-SGD, but the loss curve and clipped fractions it
                # records are exact statistics of the private batches: no epsilon covers them,
                # nor an LR chosen from them (docs/privacy-ledger.md)
                "covered_by_epsilon": None if self.loss_kind != "private" else False,
                **asdict(self.sweep)}


def run(config: ExperimentConfig, data, *, regime_spec: str, seed: int, sweep: Sweep,
        on_step=None) -> RangeTest:
    """Sweep the LR over ``sweep.steps`` optimizer steps; ``data`` is a prepared DataBundle."""
    # base LR 1, so the multiplier the loop sets is the absolute LR of the sweep
    prepared = prepare(config, data, regime_spec=regime_spec, seed=seed, lr=1.0,
                       total_steps=lambda batches: sweep.steps)
    setup, regime = prepared.setup, prepared.regime
    result = RangeTest(regime=regime_spec, loss_kind=regime.loss_kind, sweep=sweep)
    _sweep(setup, regime, result, on_step)
    _suggest(result)
    if result.loss_kind == "private":
        result.epsilon = regime.spent()
    return result


def _sweep(setup: TrainingSetup, regime: Regime, result: RangeTest, on_step) -> None:
    sweep, model, optimizer = result.sweep, setup.model, setup.optimizer
    private = getattr(regime, "private", None)
    training(model, optimizer)
    average, best, step = 0.0, math.inf, 0
    loss_sum, seen, clipped, norms_seen = 0.0, 0, 0, 0
    while step < sweep.steps:
        for x, y in setup.loader:
            lr = sweep.lr(step)
            stop = begin_step(setup, regime, lr=lr, progress=step / sweep.steps)
            if stop is not None:
                result.stopped = stop
                return
            loss = backward(setup, regime, x, y, progress=step / sweep.steps)["loss"]
            if private is not None and len(y):
                norms = per_sample_norms(private)
                clipped += int((norms > private.optimizer.max_grad_norm).sum())
                norms_seen += len(norms)
            if len(y):
                loss_sum += float(loss) * len(y)
                seen += len(y)
            if not regime.step(optimizer):
                continue  # a physical batch of a larger logical one: same LR, same step
            value = loss_sum / seen if seen else math.nan
            if not math.isfinite(value):
                result.stopped = "diverged"
                return
            average = sweep.smoothing * average + (1 - sweep.smoothing) * value
            smoothed = average / (1 - sweep.smoothing ** (step + 1))
            row = {"step": step, "lr": lr, "loss": value, "smoothed_loss": smoothed}
            if private is not None:
                row["clipped_fraction"] = clipped / norms_seen if norms_seen else math.nan
            result.rows.append(row)
            if on_step is not None:
                on_step()
            loss_sum, seen, clipped, norms_seen = 0.0, 0, 0, 0
            step += 1
            best = min(best, smoothed)
            if step > 1 and smoothed > sweep.diverge_factor * best:
                result.stopped = "diverged"
                return
            if step >= sweep.steps:
                return


def _suggest(result: RangeTest) -> None:
    """Steepest descent of the smoothed loss before its minimum, in log LR."""
    if len(result.rows) < 3:
        return
    lrs = np.array([r["lr"] for r in result.rows])
    losses = np.array([r["smoothed_loss"] for r in result.rows])
    lowest = int(np.argmin(losses))
    result.min_loss_lr = float(lrs[lowest])
    if lowest < 2:  # the loss never fell: no descent to point at
        return
    slope = np.gradient(losses[:lowest + 1], np.log10(lrs[:lowest + 1]))
    steepest = float(lrs[int(np.argmin(slope))])
    if result.loss_kind == "private":  # the edge-of-divergence rule above
        steepest = min(steepest, result.min_loss_lr / 10)
    result.suggested_lr = steepest


def save(result: RangeTest, out_dir) -> None:
    """lr_find.csv (one row per step), lr_find.json (the suggestion) and lr_find.png."""
    import csv
    import json

    from matplotlib.figure import Figure

    columns = list(result.rows[0]) if result.rows else ["step", "lr", "loss", "smoothed_loss"]
    with open(out_dir / "lr_find.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(result.rows)
    (out_dir / "lr_find.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    private = result.loss_kind == "private"
    figure = Figure(figsize=(7, 6.5 if private else 4.2))
    axes = figure.subplots(2 if private else 1, 1, sharex=True, squeeze=False)[:, 0]
    lrs = [r["lr"] for r in result.rows]
    axes[0].plot(lrs, [r["loss"] for r in result.rows], color="#bbbbbb", lw=1, label="per step")
    axes[0].plot(lrs, [r["smoothed_loss"] for r in result.rows], lw=2, label="smoothed")
    if result.suggested_lr is not None:
        axes[0].axvline(result.suggested_lr, color="#d62728", ls="--",
                        label=f"suggested {result.suggested_lr:.3g}")
    axes[0].set_xscale("log")
    smoothed = [r["smoothed_loss"] for r in result.rows]
    if smoothed:  # a diverging last step would flatten the curve that matters
        lowest = min(min(smoothed), min(r["loss"] for r in result.rows))
        axes[0].set_ylim(0.9 * lowest, 1.5 * max(smoothed[0], min(smoothed)))
    axes[0].set_ylabel(f"{result.loss_kind} training loss")
    axes[0].set_title(f"LR range test: {result.regime}")
    axes[0].legend(fontsize=8)
    if private:
        axes[1].plot(lrs, [r["clipped_fraction"] for r in result.rows], lw=1.5)
        axes[1].set_ylabel("fraction of gradients clipped")
        axes[1].set_ylim(-0.02, 1.02)
    axes[-1].set_xlabel("learning rate")
    figure.tight_layout()
    figure.savefig(out_dir / "lr_find.png", dpi=110)
