"""Model-side helpers for Opacus-wrapped modules: unwrap, fix, and attack with hooks off.

Opacus' ``GradSampleModule`` hooks every trainable layer: the forward hook stores the
layer's input, the backward hook pops it and writes per-sample gradients (or, in ghost
mode, per-sample norms). An attack's backward pass on the wrapped model therefore
- in train mode, fills ``p.grad_sample`` (hooks mode), which the next ``optimizer.step()``
  clips and noises together with the real batch unless ``zero_grad()`` runs in between
  (silently wrong), or makes Opacus raise "Poisson sampling is not compatible with grad
  accumulation";
- in eval mode (no activations stored) raises, in Opacus 1.6,
  ``ValueError: No activations detected for <layer>`` on a fresh model, or
  ``IndexError: pop from empty list`` after an earlier train-mode pass.
:func:`hooks_disabled` switches the hooks off for the attack and restores ``p.grad`` after.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP
from opacus.grad_sample import AbstractGradSampleModule
from opacus.validators import ModuleValidator
from torch import nn


def unwrap(module: nn.Module) -> nn.Module:
    """The plain model inside Opacus' ``GradSampleModule`` and ``DPDDP`` wrappers (the module
    itself otherwise)."""
    while isinstance(module, (AbstractGradSampleModule, DPDDP)):
        module = module._module if isinstance(module, AbstractGradSampleModule) else module.module
    return module


@contextlib.contextmanager
def hooks_disabled(module: nn.Module) -> Iterator[nn.Module]:
    """Run input-gradient code (PGD, ART attacks) on a DP-wrapped model safely.

    Yields the module itself (still wrapped, so its parameters are shared). Parameter
    ``.grad`` tensors are restored on exit, so an attack that calls ``loss.backward()``
    (ART does) leaves no trace in the next DP step. A plain module passes through.
    """
    if not isinstance(module, AbstractGradSampleModule):
        yield module
        return
    was_enabled = getattr(module, "hooks_enabled", True)
    saved = [(p, p.grad, getattr(p, "grad_sample", None)) for p in module.parameters()]
    module.disable_hooks()
    try:
        yield module
    finally:
        for p, grad, grad_sample in saved:
            p.grad, p.grad_sample = grad, grad_sample
        if was_enabled:
            module.enable_hooks()


def fix_model(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """Make a model Opacus-compatible; return it with one message per change made.

    ``ModuleValidator.fix`` replaces BatchNorm by GroupNorm (per-sample gradients are
    undefined when a batch statistic mixes examples). In-place ReLUs are switched to
    out-of-place because Opacus' backward hooks reject them (docs/facts.md); an in-place
    ``out += identity`` in a forward method cannot be fixed from outside and is reported
    by Opacus at the first backward pass.
    """
    messages = [f"{type(err).__name__}: {err}" for err in
                ModuleValidator.validate(module, strict=False)]
    if messages:
        messages = [m + " -> fixed by ModuleValidator.fix (BatchNorm becomes GroupNorm)"
                    if "BatchNorm" in m else m for m in messages]
        module = ModuleValidator.fix(module)
    for name, sub in module.named_modules():
        if getattr(sub, "inplace", False) is True:
            sub.inplace = False
            messages.append(f"{name}: {type(sub).__name__}(inplace=True) -> inplace=False "
                            "(Opacus' backward hooks reject in-place outputs)")
    remaining = ModuleValidator.validate(module, strict=False)
    if remaining:
        raise ValueError("model still incompatible with Opacus after fixing: "
                         + "; ".join(str(e) for e in remaining))
    return module, messages
