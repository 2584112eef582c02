"""robustlr's DP side: DP-SGD via Opacus, accounting, a hard budget guard, MIA audits.

Depends only on torch, numpy, scipy, Opacus and ART, never on ``robustlr``.

- :mod:`privacy.accounting`: :func:`epsilon`, :func:`calibrate`, :class:`BudgetGuard`
  (accounting for scheduled noise on Opacus' accountants).
- :mod:`privacy.grad_sample`: the grad-sample modes (per-sample clipping) and their table.
- :mod:`privacy.engine`: ``make_private`` and the per-step controls for the training loop.
- :mod:`privacy.audit`: membership-inference audits, the one-run canary audit among them.
- :mod:`privacy.ledger`, :mod:`privacy.gaussian`, :mod:`privacy.selection`: what a trial
  releases besides DP-SGD (the ledger, a Gaussian release, a private choice among runs).
"""

import sys

from . import audit, engine  # noqa: F401
from .accounting import ACCOUNTANTS, composition, epsilon, full_batch, guard
from .accounting import calibrate as _calibrate_module
from .accounting.calibrate import calibrate
from .accounting.guard import BudgetGuard
from .audit import mia_stats, one_run
from .grad_sample import (
    bookkeeping,
    clipped_sums,
    ghost_norms,
    group_norm,
    in_place_noise,
    modules,
    opacus_engine,
    pixel_gram,
    support,
)

# The modules' paths before the split into accounting/, grad_sample/ and audit/ (issue 27):
# ``import robustlr.privacy.guard`` and ``from robustlr.privacy import ghost_norms`` still work.
# The old ``accounting`` and ``audit`` modules are now the packages of those names.
_MOVED = {"calibrate": _calibrate_module, "composition": composition, "full_batch": full_batch,
          "guard": guard, "audit_one_run": one_run, "mia_stats": mia_stats,
          "bookkeeping": bookkeeping, "clipped_sums": clipped_sums, "ghost_norms": ghost_norms,
          "grad_modes": opacus_engine, "group_norm": group_norm, "in_place_noise": in_place_noise,
          "modules": modules, "pixel_gram": pixel_gram, "support": support}
for _old, _module in _MOVED.items():
    sys.modules.setdefault(f"{__name__}.{_old}", _module)
audit_one_run = one_run

__all__ = ["ACCOUNTANTS", "BudgetGuard", "audit", "calibrate", "engine", "epsilon"]
