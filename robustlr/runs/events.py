"""What a running trial reports to the one writer (the parent process): each finished epoch,
then its end. Backends (local pool, Ray) carry these unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EpochEnded:
    trial: str
    row: dict[str, Any]


@dataclass(frozen=True)
class TrialEnded:
    trial: str
    status: str
    summary: dict[str, Any]
    error: str | None = None


Event = EpochEnded | TrialEnded
