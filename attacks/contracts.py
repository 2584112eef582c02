"""The contracts of the adversarial side's three plug-in kinds, as protocols that mypy checks,
and the tables their classes register in with a decorator.

A class joins its table with ``@EVASION_ATTACKS.register("name")`` (or ``POISONS``,
``FILTERS``) on its definition; the decorator's type makes mypy check the class against the
kind's protocol, so a contract cannot drift into prose. The tables are plain name -> class
mappings (this package depends on no part of robustlr's core); robustlr's catalog builds its
spec registries from them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar

import torch
from torch import nn

if TYPE_CHECKING:
    from .filters.base import FilterInputs, FilterResult
    from .poisoning.base import PoisonedData


class EvasionAttack(Protocol):
    """``attack(model, x, y) -> x_adv``: inputs in [0, 1], the model returns logits (N, C);
    ``x_adv`` stays inside the attack's eps-ball around ``x`` and inside [0, 1]."""

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


class Poison(Protocol):
    """``poison(x, y, *, num_classes, generator, model=None) -> PoisonedData``: the poisoned
    training set, with the positions of the poisons."""

    def poison(self, x: torch.Tensor, y: torch.Tensor, *, num_classes: int,
               generator: torch.Generator | None, model: nn.Module | None = None) -> PoisonedData: ...


class PoisonFilter(Protocol):
    """A filter declares what it reads (``needs``: ``{"features"}`` or ``{"losses"}``) and
    returns its verdict from ``fit_predict(FilterInputs) -> FilterResult``."""

    needs: ClassVar[frozenset[str]]

    def fit_predict(self, inputs: FilterInputs) -> FilterResult: ...


_Class = TypeVar("_Class", bound=type)
AttackClass = TypeVar("AttackClass", bound=type[EvasionAttack])
PoisonClass = TypeVar("PoisonClass", bound=type[Poison])
FilterClass = TypeVar("FilterClass", bound=type[PoisonFilter])


class _Table(dict[str, type]):
    """Name -> class in registration order; a name registered twice is a bug."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def _adder(self, name: str) -> Callable[[_Class], _Class]:
        def add(cls: _Class) -> _Class:
            if name in self:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self[name] = cls
            return cls
        return add


# one subclass per kind: its register's bound type variable is what makes mypy check the class
class AttackTable(_Table):
    def register(self, name: str) -> Callable[[AttackClass], AttackClass]:
        """Register an evasion attack class under ``name`` (a decorator)."""
        return self._adder(name)


class PoisonTable(_Table):
    def register(self, name: str) -> Callable[[PoisonClass], PoisonClass]:
        """Register a poisoning attack class under ``name`` (a decorator)."""
        return self._adder(name)


class FilterTable(_Table):
    def register(self, name: str) -> Callable[[FilterClass], FilterClass]:
        """Register a poison filter class under ``name`` (a decorator)."""
        return self._adder(name)


EVASION_ATTACKS = AttackTable("attack")
POISONS = PoisonTable("poison")
FILTERS = FilterTable("filter")

__all__ = ["EVASION_ATTACKS", "FILTERS", "POISONS", "AttackTable", "EvasionAttack", "FilterTable",
           "Poison", "PoisonFilter", "PoisonTable"]
