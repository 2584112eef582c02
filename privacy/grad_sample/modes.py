"""The grad-sample modes, one row each: what the engine, the support check, the diagnostics
and ``benchmarks/bench_dp.py`` know about a mode, and the only place they learn it.

A mode either is one of Opacus' own (``module`` None: Opacus builds it) or brings its
GradSampleModule class (:class:`GradSampleModuleFactory`) and, when its loss backward differs
from Opacus' ghost clipping, its loss wrapper. Adding a mode is one row here and its test
(``tests/privacy/test_grad_sample_modes.py`` checks every row's fields against a real step;
``tests/privacy/test_fast_clipping.py`` checks robustlr's modes against Opacus' hooks step).

- ``hooks``, ``functorch``: per-sample gradients materialised (Opacus).
- ``ew``: torch's ExpandedWeights, only for the layers torch implements it for.
- ``ghost`` (Opacus; Li et al. 2022, arXiv:2110.05679): per-sample norms in a first backward
  pass, the clipped sum in a second.
- ``ghost_mixed``: ``ghost`` with the mixed ghost norms of :mod:`.ghost_norms` for
  convolutions and GroupNorm.
- ``ghost_bk``: book-keeping (Bu et al. 2023, arXiv:2210.00038, :mod:`.bookkeeping`), one
  backward pass.

A parameter shared by two layers: Opacus' ghost modes raise "Parameter tying is not supported"
at the first forward pass; hooks, functorch and ghost_bk sum per-sample gradients over the
sharing layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from opacus.grad_sample import GradSampleModuleFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping
from torch import nn

from .bookkeeping import BookKeepingModule
from .bookkeeping_loss import BookKeepingLoss
from .ghost_norms import MixedGhostModule


class GradSampleModuleFactory(Protocol):
    """A robustlr mode's module class: wraps the model and clips by the per-sample norms it
    computes in the backward pass (Opacus' fast-clipping contract: ``max_grad_norm`` settable
    between steps, ``per_sample_gradient_norms`` readable after a backward pass)."""

    def __call__(self, m: nn.Module, *, batch_first: bool, loss_reduction: str,
                 max_grad_norm: float) -> GradSampleModuleFastGradientClipping: ...


EXPANDED_WEIGHTS_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding, nn.GroupNorm, nn.LayerNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


@dataclass(frozen=True, kw_only=True)
class GradSampleMode:
    """One grad-sample mode and what the rest of robustlr may rely on."""

    name: str
    fast_clipping: bool
    """Clips by per-sample norms without keeping every per-sample gradient (Opacus' fast
    gradient clipping): the engine hands back a wrapped criterion whose backward clips, the
    optimizer adds the noise to the clipped sum, and the diagnostics read the module's norms."""
    supports_tying: bool
    """A parameter shared by two layers gets the sum of its per-sample gradients."""
    layers: tuple[type[nn.Module], ...] | None = None
    """The layer types it can clip; None: any trainable layer (functorch as the fallback)."""
    augmult: bool = False
    """Materialises per-sample gradients where ``dp(augmult=K)`` averages them."""
    module: GradSampleModuleFactory | None = None
    """robustlr's own module class; None: Opacus builds the mode's module itself."""
    loss: type[DPLossFastGradientClipping] | None = None
    """robustlr's own loss wrapper; None: Opacus' (for fast clipping: two backward passes)."""
    benchmarked: bool = True
    """In ``benchmarks/bench_dp.py``'s default comparison."""

    def __post_init__(self) -> None:
        # Opacus' make_private returns the wrapped criterion exactly when "ghost" is in the
        # mode's name (opacus/privacy_engine.py), so a fast-clipping mode must be named so
        if self.fast_clipping != ("ghost" in self.name):
            raise ValueError(f"grad-sample mode {self.name!r}: fast_clipping={self.fast_clipping} "
                             "needs 'ghost' in the name exactly when it is True (Opacus' rule)")
        if self.loss is not None and self.module is None:
            raise ValueError(f"grad-sample mode {self.name!r}: a loss wrapper needs its module")

    @property
    def returns_criterion(self) -> bool:
        """Whether ``make_private`` hands back a wrapped loss to call instead of the plain one."""
        return self.fast_clipping

    def supports(self, layer: nn.Module, *, tied: bool) -> bool:
        """Whether this mode clips ``layer`` (``tied``: it shares a parameter with another)."""
        known = self.layers is None or type(layer) in self.layers
        return known and (self.supports_tying or not tied)


_ROWS = (
    GradSampleMode(name="ghost", fast_clipping=True, supports_tying=False),
    GradSampleMode(name="hooks", fast_clipping=False, supports_tying=True, augmult=True),
    GradSampleMode(name="functorch", fast_clipping=False, supports_tying=True, augmult=True,
                   benchmarked=False),
    GradSampleMode(name="ew", fast_clipping=False, supports_tying=False,
                   layers=EXPANDED_WEIGHTS_LAYERS, benchmarked=False),
    GradSampleMode(name="ghost_mixed", fast_clipping=True, supports_tying=False,
                   module=MixedGhostModule),
    GradSampleMode(name="ghost_bk", fast_clipping=True, supports_tying=True,
                   module=BookKeepingModule, loss=BookKeepingLoss),
)
MODES: dict[str, GradSampleMode] = {row.name: row for row in _ROWS}
DEFAULT_MODE = "ghost_bk"  # fastest in benchmarks/bench_dp.py on every model measured


def mode(name: str) -> GradSampleMode:
    """The row of ``name``; a one-line ``ValueError`` listing the modes otherwise."""
    if name not in MODES:
        raise ValueError(f"grad_sample_mode must be one of {tuple(MODES)}, got {name!r}")
    return MODES[name]
