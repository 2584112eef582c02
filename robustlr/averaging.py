"""Weight averaging as a grid dimension: ``averaging: [none, "ema(decay=0.999)",
"swa(start=0.75)"]``. The specs live here (the catalog registers them); the averaging itself
runs in :mod:`robustlr.training.averaging`.

Averaging is the known remedy for robust overfitting (Rice et al. 2020; Chen et al. 2021,
"Robust overfitting may be mitigated by properly learned smoothening"), so a grid can compare,
per schedule, the raw and the averaged weights' robust-accuracy trajectories.
"""

from __future__ import annotations

from dataclasses import dataclass

from robustlr.spec import Registry

AVERAGING = Registry("averaging")


@dataclass(frozen=True)
class AveragingSpec:
    decay: float | None  # EMA's decay; None: an equal-weight mean (SWA)
    start: float  # training progress in [0, 1) from which weights are averaged
    per_step: bool  # update after every optimizer step (EMA) or every epoch (SWA)


@AVERAGING.register("ema")
def ema(decay: float = 0.999, start: float = 0.0) -> AveragingSpec:
    """Exponential moving average of the weights, updated after every optimizer step from
    progress ``start`` on: avg <- decay * avg + (1 - decay) * weights (BatchNorm buffers too)."""
    if not 0 < decay < 1:
        raise ValueError(f"decay must be in (0, 1), got {decay}")
    if not 0 <= start < 1:
        raise ValueError(f"start must be in [0, 1), got {start}")
    return AveragingSpec(decay=decay, start=start, per_step=True)


@AVERAGING.register("swa")
def swa(start: float = 0.75) -> AveragingSpec:
    """Stochastic weight averaging (Izmailov et al. 2018): the mean of the end-of-epoch
    weights once training progress reaches ``start``; BatchNorm statistics recomputed on the
    training data before each evaluation."""
    if not 0 <= start < 1:
        raise ValueError(f"start must be in [0, 1), got {start}")
    return AveragingSpec(decay=None, start=start, per_step=False)
