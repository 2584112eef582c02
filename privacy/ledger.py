"""The privacy ledger: every data-dependent computation whose result leaves a DP trial.

A DP trial's epsilon must cover what it releases and what is chosen with its data, not only
DP-SGD: statistics of the private data (normalization), a filter's pass over it, the choice of
schedule, LR scale and epoch made on private validation data. Each is one :class:`Entry` with
its mechanism and its (epsilon, delta); an entry computed from data the user declared public
costs nothing and says so.

Entries compose by basic composition (epsilons add, deltas add; Dwork & Roth 2014, Thm 3.16):
an upper bound whatever the mechanisms are. DP-SGD's own steps are composed tightly inside
their entry by the accountant (PRV or RDP); only the few other entries are added on top.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

MECHANISMS = ("subsampled_gaussian", "gaussian", "report_noisy_max", "composition", "public",
              "none", "shuffled_gaussian", "out_of_scope")
"""``none``: computed from private data without noise (epsilon infinite: no DP guarantee).
``shuffled_gaussian``: DP-SGD on fixed shuffled batches, which no analysis here accounts for
(the Poisson analysis does not cover shuffling: Chua et al. 2024, arXiv:2403.17673), so its
epsilon is infinite: no DP guarantee. ``out_of_scope``: computed on the private data before the
data set the guarantee covers was fixed (a poison filter under ``dp(scope=after_filter)``); the
guarantee is stated for that smaller set only, within which it costs nothing."""
_UNBOUNDED = ("none", "shuffled_gaussian")


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One released or chosen computation on the data: what, how, and what it cost."""

    name: str
    """What was computed, e.g. ``dp_sgd``, ``normalization``, ``selection``."""
    mechanism: str
    epsilon: float
    delta: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    """Numbers that let a reader recompute the cost (sigma, sample rate, steps, candidates)."""

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise ValueError(f"ledger entry {self.name!r}: mechanism must be one of "
                             f"{', '.join(MECHANISMS)}, got {self.mechanism!r}")
        if math.isnan(self.epsilon) or self.epsilon < 0 or not 0 <= self.delta <= 1:
            raise ValueError(f"ledger entry {self.name!r}: epsilon must be >= 0 and delta in "
                             f"[0, 1], got {self.epsilon} and {self.delta}")
        if self.mechanism in ("public", "out_of_scope") and (self.epsilon or self.delta):
            raise ValueError(f"ledger entry {self.name!r}: a {self.mechanism} computation costs "
                             "nothing")
        if self.mechanism in _UNBOUNDED and self.epsilon != math.inf:
            raise ValueError(f"ledger entry {self.name!r}: a {self.mechanism} computation on "
                             "private data has no finite epsilon")

    @property
    def public(self) -> bool:
        return self.mechanism == "public"

    def record(self) -> dict[str, Any]:
        """The entry as summary.json stores it (``epsilon`` null when infinite)."""
        row = asdict(self)
        row["epsilon"] = self.epsilon if math.isfinite(self.epsilon) else None
        return row

    @classmethod
    def from_record(cls, row: dict[str, Any]) -> Entry:
        eps = row.get("epsilon")
        return cls(name=row["name"], mechanism=row["mechanism"],
                   epsilon=math.inf if eps is None else float(eps),
                   delta=float(row.get("delta", 0.0)), detail=dict(row.get("detail") or {}))


@dataclass(frozen=True)
class Ledger:
    """The entries of one trial (or of a choice among trials), in the order they happened."""

    entries: tuple[Entry, ...] = ()

    def add(self, *entries: Entry) -> Ledger:
        return Ledger(self.entries + tuple(entries))

    @property
    def epsilon(self) -> float:
        """The total: what the trial's ``epsilon`` field, the report and the gate read."""
        return math.fsum(entry.epsilon for entry in self.entries) if self.entries else 0.0

    @property
    def delta(self) -> float:
        return min(1.0, math.fsum(entry.delta for entry in self.entries))

    @property
    def guaranteed(self) -> bool:
        """Whether the total is a finite epsilon (no entry without a DP guarantee)."""
        return math.isfinite(self.epsilon)

    def remaining(self, cap: float) -> float:
        """What a cap on the total leaves for entries not yet spent (may be <= 0)."""
        return cap - self.epsilon

    def records(self) -> list[dict[str, Any]]:
        return [entry.record() for entry in self.entries]

    @classmethod
    def from_records(cls, rows: list[dict[str, Any]]) -> Ledger:
        return cls(tuple(Entry.from_record(row) for row in rows))
