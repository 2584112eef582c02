"""Every registry robustlr builds specs from, in one place (:mod:`robustlr.experiment` builds
every spec of a config with them before a run starts).

The adversarial and DP packages keep plain name -> class tables so that they stay usable
without robustlr's core; they are wrapped here once, not in the modules that use them.
"""

from __future__ import annotations

from robustlr.attacks import EVASION_ATTACKS
from robustlr.attacks.filters import FILTERS as FILTER_CLASSES
from robustlr.attacks.poisoning import POISONS as POISON_CLASSES
from robustlr.averaging import AVERAGING
from robustlr.data.augment import AUGMENTS
from robustlr.models import MODELS
from robustlr.regimes import REGIMES
from robustlr.schedules import SCHEDULES
from robustlr.spec import Registry


def _wrap(kind: str, table: dict[str, type]) -> Registry:
    registry = Registry(kind)
    for name, cls in table.items():
        registry.register(name, cls)
    return registry


ATTACKS = _wrap("attack", EVASION_ATTACKS)
POISONS = _wrap("poison", POISON_CLASSES)
FILTERS = _wrap("filter", FILTER_CLASSES)
REGISTRIES = {"schedule": SCHEDULES, "regime": REGIMES, "model": MODELS, "attack": ATTACKS,
              "poison": POISONS, "filter": FILTERS, "averaging": AVERAGING, "augment": AUGMENTS}

__all__ = ["ATTACKS", "AUGMENTS", "AVERAGING", "FILTERS", "MODELS", "POISONS", "REGIMES",
           "REGISTRIES", "SCHEDULES"]
