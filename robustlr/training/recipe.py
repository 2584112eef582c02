"""The user's training recipe around a regime's loss: mixed precision (autocast, with loss
scaling for fp16), channels-last memory format, gradient accumulation and gradient clipping.

Autocast covers the regime's whole ``losses`` call, attack included: the attack's input
gradient is taken in the same precision as the training step, while the perturbation itself
(x + step * sign, the projection, the [0, 1] clamp) stays in fp32 because the inputs do. The
backward pass runs outside autocast, as torch recommends. Label smoothing is the regime's
criterion (``Regime.criterion``), so it applies to every regime's loss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch
from torch import nn

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Recipe:
    """One trial's recipe; ``pending`` counts micro-batches back-propagated since the last
    optimizer step (the schedule clock counts optimizer steps, not micro-batches)."""

    def __init__(self, *, device: torch.device, precision: str = "fp32",
                 channels_last: bool = False, accumulate: int = 1,
                 grad_clip: float | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.device, self.dtype = device, PRECISIONS[precision]
        self.channels_last, self.accumulate, self.grad_clip = channels_last, accumulate, grad_clip
        # fp16 alone needs loss scaling: its exponent range underflows small gradients
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self.pending = 0

    @classmethod
    def from_config(cls, train, device: torch.device) -> Recipe:
        return cls(device=device, precision=train.precision, channels_last=train.channels_last,
                   accumulate=train.accumulate, grad_clip=train.grad_clip)

    def steps_per_epoch(self, batches: int) -> int:
        return -(-batches // self.accumulate)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Back-propagate one micro-batch's loss into the accumulated gradient."""
        if self.pending == 0:
            optimizer.zero_grad(set_to_none=True)
        if self.accumulate > 1:
            loss = loss / self.accumulate
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        self.pending += 1

    def ready(self, *, last: bool) -> bool:
        """Whether the optimizer steps now: a full group, or the epoch's last micro-batch."""
        return self.pending >= self.accumulate or last

    def step(self, optimizer: torch.optim.Optimizer, regime, parameters: Iterable[nn.Parameter]) -> bool:
        """Take the optimizer step (the regime's); False when none was taken (DP skipped it,
        or fp16 found an inf/NaN gradient and the scaler lowered its scale)."""
        pending, self.pending = self.pending, 0
        with_grad = [p for p in parameters if p.grad is not None]
        grads = [p.grad for p in with_grad if p.grad is not None]
        if 0 < pending < self.accumulate and grads:
            # a short last group: its losses were divided by `accumulate`, not by its size
            torch._foreach_mul_(grads, self.accumulate / pending)
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(with_grad, self.grad_clip)
        if self.scaler is None:
            return regime.step(optimizer)
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
