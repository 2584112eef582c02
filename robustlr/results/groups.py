"""What a result group is: trials that differ only by seed. Defined once for the gate,
``compare`` and every report section."""

from __future__ import annotations

from typing import Any

from robustlr.errors import InputError
from robustlr.spec import SpecError, is_none, parse

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


def _spec_name(spec: Any) -> tuple[str, Any]:
    """(name, parameters in key order) of a spec as written; the text itself when it does not
    parse."""
    try:
        parsed = parse(spec)
        return parsed.name, (parsed.name, sorted(parsed.params, key=lambda item: item[0]))
    except SpecError:
        return str(spec).split("(")[0].strip(), str(spec)


def matches(written: Any, wanted: str) -> bool:
    """Whether a recorded spec is ``wanted``: its name (cosine) or the same spec."""
    name, canonical = _spec_name(written)
    return wanted in (name, str(written)) or _spec_name(wanted)[1] == canonical


def select(records: list[dict], option: str, key: str, wanted: str | None) -> list[dict]:
    """The records whose ``key`` matches ``wanted`` (all when None); none is an input error
    naming ``option`` and what the run has."""
    if wanted is None:
        return records
    chosen = [r for r in records if matches(r.get(key), wanted)]
    if not chosen:
        present = ", ".join(dict.fromkeys(str(r.get(key)) for r in records)) or "none"
        raise InputError(f"{option}: no trial matches {wanted!r}; the run has: {present}")
    return chosen
