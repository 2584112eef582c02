"""Schedule-aware loss-trajectory filter: who is fitted too fast, who is never fitted.

Backdoor examples are learned faster than clean ones in the early epochs (Li et al.,
"Anti-Backdoor Learning: Training Clean Models on Poisoned Data", NeurIPS 2021,
https://arxiv.org/abs/2110.11571); mislabelled examples keep a high loss until the network
memorises them, typically after an LR decay (Arpit et al., "A Closer Look at Memorization in
Deep Networks", ICML 2017; the small-loss trick of Han et al., "Co-teaching", NeurIPS 2018).

Input: an (N, T) matrix of per-example losses over T epochs (or steps) of one LR phase, which
the caller chooses (early epochs for backdoors, the phase before the first decay for flips).
Score: the mean log-loss over the trajectory (its area), robustly standardised within each
labelled class (a poisoned class fits differently as a whole), signed by ``mode``:
``"fast"`` flags low areas, ``"never"`` high ones, ``"both"`` either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..contracts import FILTERS
from .base import (
    FilterInputs,
    FilterResult,
    check_removal,
    class_groups,
    keep_all_but_top,
    removal_budget,
    require,
    resolve_rate,
    robust_z,
)

MODES = ("fast", "never", "both")


@FILTERS.register("loss_trajectory")
@dataclass(frozen=True)
class LossTrajectory:
    """Loss-trajectory filter (``needs = {"losses"}``)."""

    removal: float = 1.5
    expected_rate: float | None = None
    mode: str = "both"
    needs: ClassVar[frozenset[str]] = frozenset({"losses"})

    def __post_init__(self) -> None:
        check_removal(self.removal, self.expected_rate)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    def fit_predict(self, inputs: FilterInputs) -> FilterResult:
        losses = require(inputs, "losses", "loss_trajectory").float()
        if losses.dim() != 2 or losses.shape[1] == 0:
            raise ValueError(f"losses must be (N, T) with T >= 1, got {tuple(losses.shape)}")
        rate = resolve_rate(self.expected_rate, inputs, "loss_trajectory")
        # log spreads the near-zero losses of fitted examples, where "fast" is decided
        area = losses.clamp_min(1e-8).log().mean(dim=1)
        z = robust_z(area, class_groups(inputs.labels, inputs.num_classes))
        scores = {"fast": -z, "never": z, "both": z.abs()}[self.mode]
        keep = keep_all_but_top(scores, removal_budget(len(scores), self.removal, rate))
        return FilterResult(scores, keep)
