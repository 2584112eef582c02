"""The one bounds rule, used by ``robustlr gate``, ``robustlr compare`` and the report's
ranking under constraints.

A bound holds when the seed mean of a group is on the right side of the limit, within one
rounding error. A missing or non-finite value never holds: a gate that passed because epsilon
was absent or infinite would certify nothing.

Limits are written in the report's units: shares (accuracies, ASR, ...) in percent
(``clean_acc=96`` means 96%), the rest as stored; ``limit`` holds the stored value (0.96).

>>> Bound("max", "epsilon", 3.0).holds(2.9999999999999996)
True
>>> Bound("min", "clean_acc", 0.9).holds(None)
False
>>> parse("--min", ["clean_acc=96"], ["clean_acc"])[0].limit
0.96
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from robustlr.errors import InputError
from robustlr.records import from_report_units, unit

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

    def shown(self, value: float) -> float:
        """``value`` (stored units) in the report's units."""
        return value * 100.0 if unit(self.metric) == "%" else value

    @property
    def text(self) -> str:
        return (f"{self.metric} {'>=' if self.kind == 'min' else '<='} "
                f"{self.shown(self.limit):.6g}{unit(self.metric)}")


def from_mapping(kind: str, limits: dict[str, float]) -> list[Bound]:
    """Bounds from a config's ``report.min``/``report.max`` (report units)."""
    found = []
    for name, limit in limits.items():
        try:
            found.append(Bound(kind, name, from_report_units(name, str(limit))))
        except ValueError as error:
            raise InputError(f"report.{kind}: {error}") from None
    return found


def parse(option: str, values: Iterable[str], allowed: Iterable[str]) -> list[Bound]:
    """``--min clean_acc=90`` style arguments (report units: percent for shares); a bad one is
    an :class:`InputError` naming ``option``."""
    allowed = set(allowed)
    found = []
    for text in values:
        name, sep, raw = text.partition("=")
        name = name.strip()
        try:
            limit = float(raw.strip().removesuffix("%"))
        except ValueError:
            limit = math.nan
        if not sep or not name or not math.isfinite(limit):
            raise InputError(f"{option}: expected NAME=NUMBER (e.g. clean_acc=90, in percent "
                             f"like the report), got {text!r}")
        if name not in allowed:
            raise InputError(f"{option}: unknown metric {name!r}; allowed: {', '.join(sorted(allowed))}")
        try:
            found.append(Bound(option.lstrip("-"), name, from_report_units(name, raw)))
        except ValueError as error:
            raise InputError(f"{option}: {error}") from None
    return found
