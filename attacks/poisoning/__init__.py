"""Poisoning attacks: backdoors (BadNets, Blend, clean-label) and label flips.

``POISONS`` maps the spec names used in experiment configs to the attack classes; each is
built as ``cls(**params)`` and used as
``cls(**params).poison(x, y, *, num_classes, generator, model=None) -> PoisonedData``.
Backdoors also expose ``apply_trigger(x)`` for test-time attack success
(:func:`attacks.poisoning.metrics.backdoor_metrics`).
"""

from ..contracts import POISONS  # each class registers itself where it is defined
from .badnets import BadNets
from .base import PoisonedData
from .blend import Blend
from .clean_label import CleanLabel
from .label_flip import LabelFlip, NoPoison

__all__ = ["POISONS", "PoisonedData", "BadNets", "Blend", "CleanLabel", "LabelFlip", "NoPoison"]
