"""robustlr's DP side: DP-SGD via Opacus, accounting, a hard budget guard, MIA audits.

Depends only on torch, numpy, scipy, Opacus and ART, never on ``robustlr``.

- :func:`epsilon`, :func:`calibrate`: accounting for (scheduled) noise, Opacus accountants.
- :class:`BudgetGuard`: refuses a step that would take epsilon past a cap.
- :mod:`privacy.engine`: ``make_private`` and the per-step controls for the training loop.
- :mod:`privacy.audit`: membership-inference audit with an empirical epsilon lower bound.
- :mod:`privacy.audit_one_run`: the one-run canary audit (Steinke, Nasr & Jagielski 2023).
"""

from . import audit, engine  # noqa: F401
from .accounting import ACCOUNTANTS, epsilon
from .calibrate import calibrate
from .guard import BudgetGuard

__all__ = ["ACCOUNTANTS", "BudgetGuard", "audit", "calibrate", "engine", "epsilon"]
