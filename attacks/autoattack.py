"""Reference AutoAttack through the authors' own code (PyPI ``pyautoattack``), not a re-write.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020, https://arxiv.org/abs/2003.01690. ``standard`` runs
APGD-CE, APGD-T, FAB-T and Square (RobustBench's protocol); ``rand`` (for randomized defences)
runs APGD-CE and APGD-DLR with 20 EOT iterations.

Inputs in [0, 1], logits (N, C). Called as one attack it runs the whole ensemble; in
:func:`attacks.cascade`, :func:`expand_stages` splits it into its sub-attacks, each run by
pyautoattack on the points still robust, so the robust accuracy after each one is kept as
RobustBench logs it. Example::

    attack = AutoAttack(eps=8 / 255)
    result = cascade(model, x, y, expand_stages([("aa", attack)]))
    # result.steps: [("aa:apgd-ce", .52), ("aa:apgd-t", .50), ("aa:fab-t", .50), ("aa:square", .50)]

Below 10 classes the targeted attacks use every other class as a target (C - 1 instead of
9), the only setting that differs from the reference ``standard`` protocol.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._common import check_choice, check_int, check_number, eval_mode, model_device
from .contracts import EVASION_ATTACKS

_NORM = {"linf": "Linf", "l2": "L2", "l1": "L1"}
STAGES = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"), "rand": ("apgd-ce", "apgd-dlr")}
INSTALL = "pip install pyautoattack==0.2.0"


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(x[:1]).shape[1])


@EVASION_ATTACKS.register("autoattack")
@dataclass(frozen=True, kw_only=True)
class AutoAttack:
    """AutoAttack (``standard`` or ``rand``) at budget ``eps`` in the ``norm`` ball; ``seed``
    fixes the attacks' random starts (pyautoattack reseeds torch; the caller's RNG state is
    put back afterwards)."""

    eps: float
    norm: str = "linf"
    version: str = "standard"
    seed: int = 0

    def __post_init__(self) -> None:
        check_number("eps", self.eps, strict=True)
        check_choice("norm", self.norm, tuple(_NORM))
        if self.norm == "linf" and self.eps >= 1:
            raise ValueError(f"eps must be < 1 for norm linf (inputs are in [0, 1]), got {self.eps!r}")
        check_choice("version", self.version, tuple(STAGES))
        check_int("seed", self.seed)
        if importlib.util.find_spec("pyautoattack") is None:
            raise ValueError(f"needs the reference AutoAttack package: {INSTALL}")

    @property
    def stage_names(self) -> tuple[str, ...]:
        return STAGES[self.version]

    def stages(self) -> list[tuple[str, AutoAttackStage]]:
        """The sub-attacks in the reference order, each a cascade attack of its own."""
        return [(name, AutoAttackStage(parent=self, stage=name)) for name in self.stage_names]

    @property
    def classes_needed(self) -> int:
        """The fewest classes this version runs on: its DLR loss reads the third-largest logit,
        and the standard version's targeted attacks need three other classes."""
        return 4 if self.version == "standard" else 3

    def reference(self, model: nn.Module, device: torch.device, num_classes: int) -> Any:
        """pyautoattack's ``AutoAttack`` for ``model``, set up as this attack's version."""
        from pyautoattack import AutoAttack as Reference

        # the DLR loss reads the 3rd-largest logit, its targeted form the 4th
        needed = self.classes_needed
        if num_classes < needed:
            raise ValueError(f"AutoAttack {self.version} needs at least {needed} classes (its DLR "
                             f"loss), got {num_classes}")
        reference = Reference(model, norm=_NORM[self.norm], eps=self.eps, version=self.version,
                              device=device, seed=self.seed)
        targets = min(9, num_classes - 1)
        reference.apgd_targeted.n_target_classes = min(reference.apgd_targeted.n_target_classes,
                                                       targets)
        reference.fab.n_target_classes = min(reference.fab.n_target_classes, targets)
        return reference

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            stages: Sequence[str]) -> torch.Tensor:
        """Run ``stages`` through pyautoattack on (x, y) in eval mode; adversarial inputs."""
        if x.shape[0] == 0:
            return x.detach().clone()
        device = model_device(model, x.device)
        forked = [device] if device.type == "cuda" else []
        with eval_mode(model), torch.random.fork_rng(devices=forked):
            reference = self.reference(model, device, _num_classes(model, x.to(device)))
            reference.attacks_to_run = list(stages)
            # one batch: the caller (the cascade) already batches the points still robust
            x_adv, _ = reference.run_standard_evaluation(x.detach(), y.detach(),
                                                         batch_size=x.shape[0])
        return x_adv.to(device=x.device, dtype=x.dtype)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.run(model, x, y, self.stage_names)


@dataclass(frozen=True, kw_only=True)
class AutoAttackStage:
    """One sub-attack of an :class:`AutoAttack` (``apgd-ce``, ``apgd-t``, ``fab-t``, ...)."""

    parent: AutoAttack
    stage: str

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.parent.run(model, x, y, (self.stage,))


def expand_stages(attacks: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Replace each attack that has ``stages()`` by its sub-attacks named ``name:stage``, so
    the cascade keeps the robust accuracy after each of them."""
    expanded: list[tuple[str, Any]] = []
    for name, attack in attacks:
        if callable(getattr(attack, "stages", None)):
            expanded += [(f"{name}:{stage}", sub) for stage, sub in attack.stages()]
        else:
            expanded.append((name, attack))
    return expanded


def stage_field(stage: str) -> str:
    """The summary field of a stage's robust accuracy: ``apgd-t`` -> ``autoattack_apgd_t_acc``."""
    return f"autoattack_{stage.replace('-', '_')}_acc"


def stage_accuracies(steps: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Per-stage fields from a cascade's steps named by :func:`expand_stages`; the last
    AutoAttack stage also gives ``autoattack_acc`` (robust against everything up to it)."""
    fields: dict[str, float] = {}
    for name, accuracy in steps:
        head, _, stage = name.rpartition(":")
        if head.startswith("autoattack") and stage in STAGES["standard"] + STAGES["rand"]:
            fields[stage_field(stage)] = accuracy
            fields["autoattack_acc"] = accuracy
    return fields
