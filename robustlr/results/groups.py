"""What a result group is: trials that differ only by seed. Defined once for the gate,
``compare`` and every report section."""

from __future__ import annotations

from typing import Any

from robustlr.spec import is_none

GROUP_KEYS = ("schedule", "regime", "poison", "filter", "lr_scale", "averaging")


def key_of(record: dict[str, Any]) -> tuple:
    return tuple(record.get(name) for name in GROUP_KEYS)


def label(key: tuple) -> str:
    """``cosine / pgd_at(eps=0.1) / badnets / spectral x0.5``: the arm only when poisoned
    or filtered, the LR scale only when it is not 1."""
    schedule, regime, poison, defence, scale, *averaging = key
    arm = "" if is_none(poison) and is_none(defence) else f" / {poison} / {defence}"
    # weight averaging only when set (records from before it have none)
    averaged = "" if not averaging or is_none(averaging[0]) else f" / {averaging[0]}"
    return (f"{schedule} / {regime}{arm}" + ("" if scale in (None, 1.0) else f" x{scale:g}")
            + averaged)
