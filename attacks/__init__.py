"""Adversarial side of robustlr, usable on its own (depends on torch, numpy and ART only).

Evasion attacks take a model returning logits (N, C) and inputs in [0, 1]; normalization
lives inside the model. ``pgd``/``fgsm`` are the training hot path (native torch, the
caller controls train/eval mode); the classes are the public form, built by name from
:data:`EVASION_ATTACKS` (``cls(**params)``), run in eval mode and restore the model's modes.
"""

from __future__ import annotations

from .art_adapters import APGDCE, APGDDLR, AutoAttackART, CarliniWagnerL2, DeepFool, Square
from .autoattack import AutoAttack, expand_stages
from .cascade import CascadeResult, cascade
from .contracts import EVASION_ATTACKS  # each class registers itself where it is defined
from .fgsm import FGSM, fgsm
from .pgd import PGD, pgd

__all__ = ["APGDCE", "APGDDLR", "AutoAttack", "AutoAttackART", "CarliniWagnerL2", "CascadeResult", "DeepFool",
           "EVASION_ATTACKS", "FGSM", "PGD", "Square", "cascade", "expand_stages", "fgsm", "pgd"]
