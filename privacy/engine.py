"""DP-SGD training objects from Opacus, returned as one dataclass.

DP-SGD (Abadi et al. 2016, arXiv:1607.00133) clips every per-sample gradient to norm C and
adds Gaussian noise of standard deviation sigma * C to their sum. Opacus' optimizer does the
clipping and the noise; robustlr does the accounting itself with :func:`privacy.epsilon`
over the noise actually used per *real* step, because schedules change sigma every step.
(Opacus' own accountant is attached to the optimizer and left unused.)

Training loop contract
----------------------
- Loss: compute it with ``private.criterion(logits, y)`` and call ``loss.backward()``.
  In the ghost modes the criterion returns Opacus' ``DPTensorFastGradientClipping``:
  ``ghost`` (Opacus; Li et al. 2022, arXiv:2110.05679) and ``ghost_mixed`` (the same with
  mixed ghost norms for convolutions and GroupNorm, :mod:`.grad_sample.ghost_norms`) run two backward
  passes (per-sample norms, then the clipped sum); ``ghost_bk`` (book-keeping,
  :mod:`.grad_sample.bookkeeping`) runs one. A loss computed with plain ``F.cross_entropy`` in a ghost
  mode gives unclipped gradients: never do that. Scaling and adding losses
  (``w * loss + other``) is supported by the wrappers.
- Under ``ghost_bk`` a trainable layer's output is a view that must not be modified in
  place (autograd refuses it with "is a view and is being modified inplace").
- :func:`check_grad_sample_mode` says, before training, whether a mode can clip every
  layer of a model (one line naming the layer and the modes that can).
- ``optimizer.step()`` then ``if not step_was_skipped(optimizer): count a real step``
  (under :func:`memory_managed` most physical batches only accumulate). Advance LR and
  noise schedules and the budget guard on real steps only.
- Per-step schedules: :func:`set_noise_multiplier` / :func:`set_max_grad_norm` before the
  real step they apply to.
- Attacks on the model: inside :func:`privacy.grad_sample.modules.hooks_disabled`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from opacus import PrivacyEngine
from opacus.grad_sample import GradSampleModule
from opacus.optimizers import DPOptimizer
from opacus.utils.batch_memory_manager import BatchMemoryManager
from torch import nn
from torch.utils.data import DataLoader

from .grad_sample.modes import DEFAULT_MODE, MODES
from .grad_sample.modes import mode as mode_row
from .grad_sample.modules import fix_model, hooks_disabled, unwrap  # noqa: F401 (re-exported)
from .grad_sample.opacus_engine import Engine
from .grad_sample.support import check_grad_sample_mode  # noqa: F401 (re-exported)

GRAD_SAMPLE_MODES = tuple(MODES)  # the names, in the table's order


@dataclass
class PrivateTraining:
    """What the training loop uses instead of its plain counterparts."""

    module: GradSampleModule  # wraps the model (shares its parameters)
    optimizer: DPOptimizer  # or its fast-clipping variant
    data_loader: DataLoader  # Poisson-sampling loader when poisson_sampling=True
    criterion: Callable  # loss to call as criterion(logits, y); ghost-wrapped in ghost mode
    engine: PrivacyEngine
    mode: str


def make_private(*, module: nn.Module, optimizer, data_loader: DataLoader,
                 noise_multiplier: float, max_grad_norm: float, poisson_sampling: bool = True,
                 grad_sample_mode: str = DEFAULT_MODE, criterion: nn.Module | None = None,
                 noise_generator=None) -> PrivateTraining:
    """Wrap model, optimizer and loader for DP-SGD (flat clipping, mean loss reduction).

    ``criterion`` defaults to ``nn.CrossEntropyLoss()`` (reduction "mean"). The model must
    pass :func:`fix_model` first. ``poisson_sampling=False`` keeps the loader as is
    (fixed batches): fine for tests, but the accounting then only approximates.
    """
    row = mode_row(grad_sample_mode)
    if noise_multiplier < 0 or max_grad_norm <= 0:
        raise ValueError("noise_multiplier must be >= 0 and max_grad_norm > 0, got "
                         f"{noise_multiplier!r}, {max_grad_norm!r}")
    criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = Engine(accountant="rdp")  # cheap to step; robustlr accounts itself
    out = engine.make_private(
        module=module, optimizer=optimizer, data_loader=data_loader, criterion=criterion,
        noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
        poisson_sampling=poisson_sampling, grad_sample_mode=grad_sample_mode,
        noise_generator=noise_generator)
    if row.returns_criterion:
        wrapped, dp_optimizer, dp_criterion, loader = out
        dp_optimizer.robustlr_ghost_module = wrapped  # set_max_grad_norm must reach it
    else:
        (wrapped, dp_optimizer, loader), dp_criterion = out, criterion
    return PrivateTraining(module=wrapped, optimizer=dp_optimizer, data_loader=loader,
                           criterion=dp_criterion, engine=engine, mode=grad_sample_mode)


def set_noise_multiplier(optimizer, sigma: float) -> None:
    """Noise multiplier for the next real step (per-step noise schedules)."""
    if sigma < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {sigma!r}")
    optimizer.noise_multiplier = float(sigma)


def set_max_grad_norm(optimizer, c: float) -> None:
    """Clipping norm for the next step; in ghost mode the module clips too, so both change."""
    if c <= 0:
        raise ValueError(f"max_grad_norm must be > 0, got {c!r}")
    optimizer.max_grad_norm = float(c)
    ghost = getattr(optimizer, "robustlr_ghost_module", None)
    if ghost is not None:
        ghost.max_grad_norm = float(c)


def step_was_skipped(optimizer) -> bool:
    """True when the last ``optimizer.step()`` only accumulated a physical batch.

    Under BatchMemoryManager Opacus takes one real (noised) step per logical batch; the
    other physical batches are clipped and summed but do not update the parameters and
    spend no privacy. Read right after ``optimizer.step()``.
    """
    return bool(getattr(optimizer, "_is_last_step_skipped", False))


@contextlib.contextmanager
def memory_managed(data_loader: DataLoader, max_physical_batch_size: int,
                   optimizer) -> Iterator[DataLoader]:
    """Split logical (Poisson) batches into physical ones of at most the given size."""
    if max_physical_batch_size < 1:
        raise ValueError(f"max_physical_batch_size must be >= 1, got {max_physical_batch_size!r}")
    with BatchMemoryManager(data_loader=data_loader, optimizer=optimizer,
                            max_physical_batch_size=max_physical_batch_size) as loader:
        yield loader
