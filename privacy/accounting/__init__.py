"""Accounting: the epsilon a run of DP-SGD steps spends, and what keeps it within a budget.

- :mod:`.accountants`: the accountant table (PRV, RDP, GDP) and :func:`epsilon` of a schedule;
  its names are this package's own (``robustlr.privacy.accounting.epsilon`` and so on).
- :mod:`.composition`, :mod:`.full_batch`: PRV composition, fast; the exact value at rate 1.
- :mod:`.calibrate`: the noise that spends a target epsilon.
- :mod:`.guard`: :class:`~.guard.BudgetGuard`, the hard cap.
"""

from .accountants import (
    ACCOUNTANTS,
    BOUNDS,
    GDP_WARNING,
    MAX_LEVELS,
    PRV,
    RDP_LEVELS,
    TABLE,
    Accountant,
    History,
    OpacusAccountant,
    epsilon,
    epsilon_of_history,
    history,
    levels,
    noise_schedule,
    schedule_from_profile,
    validate,
)

__all__ = ["ACCOUNTANTS", "BOUNDS", "GDP_WARNING", "MAX_LEVELS", "PRV", "RDP_LEVELS", "TABLE",
           "Accountant", "History", "OpacusAccountant", "epsilon", "epsilon_of_history", "history",
           "levels", "noise_schedule", "schedule_from_profile", "validate"]
