"""The one bounds rule, used by ``robustlr gate``, ``robustlr compare`` and the report's
ranking under constraints.

A bound holds when the seed mean of a group is on the right side of the limit, within one
rounding error. A missing or non-finite value never holds: a gate that passed because epsilon
was absent or infinite would certify nothing.

>>> Bound("max", "epsilon", 3.0).holds(2.9999999999999996)
True
>>> Bound("min", "clean_acc", 90.0).holds(None)
False
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from robustlr.errors import InputError

TOLERANCE = 1e-12  # relative: a mean one rounding error short of its bound still holds


@dataclass(frozen=True)
class Bound:
    kind: str  # "min" or "max"
    metric: str
    limit: float

    def holds(self, value: Any) -> bool:
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value):
            return False
        slack = TOLERANCE * max(1.0, abs(self.limit))
        return value >= self.limit - slack if self.kind == "min" else value <= self.limit + slack

    @property
    def text(self) -> str:
        return f"{self.metric} {'>=' if self.kind == 'min' else '<='} {self.limit:g}"


def parse(option: str, values: Iterable[str], allowed: Iterable[str]) -> list[Bound]:
    """``--min clean_acc=90`` style arguments; a bad one is an :class:`InputError` naming
    ``option``."""
    allowed = set(allowed)
    found = []
    for text in values:
        name, sep, raw = text.partition("=")
        name = name.strip()
        try:
            limit = float(raw)
        except ValueError:
            limit = math.nan
        if not sep or not name or not math.isfinite(limit):
            raise InputError(f"{option}: expected NAME=NUMBER (e.g. clean_acc=0.9), got {text!r}")
        if name not in allowed:
            raise InputError(f"{option}: unknown metric {name!r}; allowed: {', '.join(sorted(allowed))}")
        found.append(Bound(option.lstrip("-"), name, limit))
    return found
