"""Weight averaging evaluated beside the raw weights (the specs: :mod:`robustlr.averaging`):
an exponential moving average updated every optimizer step (EMA), or stochastic weight
averaging (SWA: an equal-weight mean of the end-of-epoch weights, BatchNorm statistics
recomputed on the training data).

The average lives beside the live model as a list of tensors and is swapped into it only
while it is evaluated (no second model, so it works unchanged under Opacus, DDP and
torch.compile); everything floating in the state dict (parameters and BatchNorm buffers) is
averaged, as ``AveragedModel(use_buffers=True)`` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from robustlr.averaging import AveragingSpec


class Averager:
    """The running average of one model's state; ``update`` after each step or epoch."""

    def __init__(self, model: nn.Module, *, decay: float | None, start: float,
                 per_step: bool, recompute_bn: bool):
        # views of the live tensors: optimizers update them in place
        self.state = list(model.state_dict().values())
        self.floats = [t for t in self.state if t.is_floating_point()]
        self.decay, self.start, self.per_step = decay, start, per_step
        self.recompute_bn = recompute_bn
        self.average: list[torch.Tensor] | None = None
        self.count = 0

    @torch.no_grad()
    def update(self, *, progress: float) -> None:
        if progress < self.start:
            return
        if self.average is None:
            self.average = [t.detach().clone() for t in self.floats]
        else:
            weight = 1.0 - self.decay if self.decay is not None else 1.0 / (self.count + 1)
            torch._foreach_lerp_(self.average, self.floats, weight)
        self.count += 1

    @property
    def ready(self) -> bool:
        return self.average is not None

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module, batches: Iterable, *,
                   generator: torch.Generator) -> Iterator[nn.Module]:
        """``model`` holding the averaged weights (BatchNorm statistics recomputed for SWA
        over the training ``batches``); the raw weights and buffers are restored after."""
        assert self.average is not None
        raw = [t.clone() for t in self.state]
        with torch.no_grad():
            torch._foreach_copy_(self.floats, self.average)
        try:
            if self.recompute_bn:
                recompute_batchnorm(model, batches, generator=generator)
            yield model
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.state, raw)

    def state_dict(self) -> dict:
        return {"average": self.average, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        average = state["average"]
        self.average = None if average is None else [
            saved.to(live.device) for saved, live in zip(average, self.floats)]
        self.count = state["count"]


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batches: Iterable, *, generator: torch.Generator) -> None:
    """BatchNorm running statistics as an equal-weight mean over one pass of the training
    ``batches`` (torch's ``update_bn``). The batch generator and the global RNG (dropout) are
    restored after, so averaging leaves the raw run as it would have been."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = {m: m.momentum for m in norms}
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    device = next(model.parameters()).device
    order = generator.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x.to(device))
    generator.set_state(order)
    for m, momentum in momenta.items():
        m.momentum = momentum
    model.train(was_training)


def attach(spec: AveragingSpec, model: nn.Module) -> Averager:
    """An averager of ``model``'s state as ``spec`` asks (the plain module: unwrapped)."""
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return Averager(model, decay=spec.decay, start=spec.start, per_step=spec.per_step,
                    recompute_bn=spec.decay is None and has_bn)
