"""Thin adapters over ART's attack catalogue: the one place tensors become numpy arrays.

Each adapter is a frozen dataclass called as ``attack(model, x, y) -> x_adv`` on [0, 1]
tensors; it wraps the model in ART's ``PyTorchClassifier`` (clip values (0, 1), logits,
cross-entropy), runs the attack in eval mode, restores the model's modes and returns a
tensor on ``x``'s device. ART draws its randomness from numpy's global generator: ``seed``
seeds it for the call and the previous state is put back afterwards. ART is imported
lazily so that ``import attacks`` stays cheap for the training hot path.

Papers: APGD — Croce & Hein, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", ICML 2020, https://arxiv.org/abs/2003.01690;
Square — Andriushchenko et al., ECCV 2020, https://arxiv.org/abs/1912.00049; C&W — Carlini &
Wagner, IEEE S&P 2017, https://arxiv.org/abs/1608.04644; DeepFool — Moosavi-Dezfooli et al.,
CVPR 2016, https://arxiv.org/abs/1511.04599.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ._common import (
    NORMS,
    check_choice,
    check_int,
    check_number,
    check_optional_number,
    eval_mode,
    flat_norm,
    model_device,
    project,
)
from .contracts import EVASION_ATTACKS

_ART_NORM = {"linf": np.inf, "l2": 2}


@contextlib.contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def art_classifier(model: nn.Module, x: torch.Tensor) -> Any:
    """Wrap ``model`` for ART: logits, cross-entropy, inputs clipped to [0, 1]."""
    from art.estimators.classification import PyTorchClassifier

    device = model_device(model, x.device)
    with torch.no_grad():
        nb_classes = int(model(x[:1].to(device)).shape[1])
    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(),
                             input_shape=tuple(x.shape[1:]), nb_classes=nb_classes,
                             clip_values=(0.0, 1.0),
                             device_type="cpu" if device.type == "cpu" else "gpu")


def run_art(attack_factory: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
            seed: int) -> torch.Tensor:
    """Run ``attack_factory(classifier)`` through ART's numpy interface, back to a tensor."""
    if x.shape[0] == 0:
        return x.detach().clone()
    with eval_mode(model), _numpy_seed(seed):
        attack = attack_factory(art_classifier(model, x))
        adv = attack.generate(x.detach().cpu().numpy(), y=y.detach().cpu().numpy())
    return torch.from_numpy(adv).to(device=x.device, dtype=x.dtype).clamp_(0.0, 1.0)


def _within(x: torch.Tensor, x_adv: torch.Tensor, eps: float | None) -> torch.Tensor:
    """Minimal-norm attacks at a budget: perturbations longer than eps (L2) count as failed."""
    if eps is None:
        return x_adv
    too_long = flat_norm(x_adv - x).flatten() > eps
    return torch.where(too_long.view(-1, *([1] * (x.dim() - 1))), x, x_adv)


def _check_common(eps: float, norm: str, seed: int, batch_size: int) -> None:
    check_number("eps", eps)
    check_choice("norm", norm, NORMS)
    check_int("seed", seed)
    check_int("batch_size", batch_size, low=1)


@EVASION_ATTACKS.register("apgd_ce")
@dataclass(frozen=True, kw_only=True)
class APGDCE:
    """APGD with cross-entropy loss (ART's ``AutoProjectedGradientDescent``).

    The first step is 2 * eps, as in Croce & Hein (ART calls it ``eps_step``).
    """

    eps: float
    norm: str = "linf"
    steps: int = 100
    restarts: int = 1
    batch_size: int = 500
    seed: int = 0
    loss_type = "cross_entropy"  # class constant, not a parameter

    def __post_init__(self) -> None:
        _check_common(self.eps, self.norm, self.seed, self.batch_size)
        check_int("steps", self.steps, low=1)
        check_int("restarts", self.restarts, low=1)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.detach().clone()
        from art.attacks.evasion import AutoProjectedGradientDescent

        def factory(classifier: Any) -> Any:
            return AutoProjectedGradientDescent(
                classifier, norm=_ART_NORM[self.norm], eps=self.eps, eps_step=2 * self.eps,
                max_iter=self.steps, nb_random_init=self.restarts, batch_size=self.batch_size,
                loss_type=self.loss_type, verbose=False)

        x_adv = run_art(factory, model, x, y, seed=self.seed)
        return (x + project(x_adv - x, self.eps, self.norm)).clamp_(0.0, 1.0)


@dataclass(frozen=True, kw_only=True)
class APGDDLR(APGDCE):
    """APGD with the difference-of-logits-ratio loss (needs at least 3 classes)."""

    loss_type = "difference_logits_ratio"


@EVASION_ATTACKS.register("square")
@dataclass(frozen=True, kw_only=True)
class Square:
    """Square attack: score-based black box, no gradients (ART's ``SquareAttack``)."""

    eps: float
    norm: str = "linf"
    queries: int = 1000
    p_init: float = 0.8
    restarts: int = 1
    batch_size: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        _check_common(self.eps, self.norm, self.seed, self.batch_size)
        check_int("queries", self.queries, low=1)
        check_int("restarts", self.restarts, low=1)
        check_number("p_init", self.p_init, strict=True)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.detach().clone()
        from art.attacks.evasion import SquareAttack

        def factory(classifier: Any) -> Any:
            return SquareAttack(classifier, norm=_ART_NORM[self.norm], eps=self.eps,
                                max_iter=self.queries, p_init=self.p_init,
                                nb_restarts=self.restarts, batch_size=self.batch_size,
                                verbose=False)

        x_adv = run_art(factory, model, x, y, seed=self.seed)
        return (x + project(x_adv - x, self.eps, self.norm)).clamp_(0.0, 1.0)


@EVASION_ATTACKS.register("cw_l2")
@dataclass(frozen=True, kw_only=True)
class CarliniWagnerL2:
    """Carlini-Wagner L2, a minimal-perturbation attack (ART's ``CarliniL2Method``).

    With ``eps`` set, adversarial points farther than eps (L2) are replaced by the clean
    input, so robust accuracy is measured at that budget; without it nothing is bounded.
    """

    eps: float | None = None
    confidence: float = 0.0
    steps: int = 10
    binary_search_steps: int = 10
    learning_rate: float = 0.01
    initial_const: float = 0.01
    batch_size: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        check_optional_number("eps", self.eps)
        check_number("confidence", self.confidence)
        check_int("steps", self.steps, low=1)
        check_int("binary_search_steps", self.binary_search_steps, low=1)
        check_number("learning_rate", self.learning_rate, strict=True)
        check_number("initial_const", self.initial_const, strict=True)
        check_int("batch_size", self.batch_size, low=1)
        check_int("seed", self.seed)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        from art.attacks.evasion import CarliniL2Method

        def factory(classifier: Any) -> Any:
            return CarliniL2Method(classifier, confidence=self.confidence,
                                   learning_rate=self.learning_rate,
                                   binary_search_steps=self.binary_search_steps,
                                   max_iter=self.steps, initial_const=self.initial_const,
                                   batch_size=self.batch_size, verbose=False)

        return _within(x, run_art(factory, model, x, y, seed=self.seed), self.eps)


@EVASION_ATTACKS.register("deepfool")
@dataclass(frozen=True, kw_only=True)
class DeepFool:
    """DeepFool, a minimal-L2 attack (ART's ``DeepFool``); ``eps`` as for C&W."""

    eps: float | None = None
    steps: int = 50
    overshoot: float = 0.02
    nb_grads: int = 10
    batch_size: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        check_optional_number("eps", self.eps)
        check_int("steps", self.steps, low=1)
        check_number("overshoot", self.overshoot)
        check_int("nb_grads", self.nb_grads, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_int("seed", self.seed)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        from art.attacks.evasion import DeepFool as ARTDeepFool

        def factory(classifier: Any) -> Any:
            return ARTDeepFool(classifier, max_iter=self.steps, epsilon=self.overshoot,
                               nb_grads=self.nb_grads, batch_size=self.batch_size,
                               verbose=False)

        return _within(x, run_art(factory, model, x, y, seed=self.seed), self.eps)


@EVASION_ATTACKS.register("autoattack_art")
@dataclass(frozen=True, kw_only=True)
class AutoAttackART:
    """APGD-CE, then APGD-DLR, then Square, each run only on the points still correct.

    NOT standard AutoAttack (Croce & Hein 2020): that one runs targeted APGD-T and FAB-T and
    5,000 Square queries; this composition has no FAB, an untargeted DLR loss and
    ``square_queries`` queries. It is composed here from ART's components because ART
    1.20.1's ``AutoAttack.generate()`` imports the optional ``multiprocess`` package.
    Report it as "AutoAttack-ART", not as AutoAttack.
    """

    eps: float
    norm: str = "linf"
    steps: int = 100
    square_queries: int = 1000
    batch_size: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        _check_common(self.eps, self.norm, self.seed, self.batch_size)
        check_int("steps", self.steps, low=1)
        check_int("square_queries", self.square_queries, low=1)

    def components(self) -> list[tuple[str, Any]]:
        common: dict[str, Any] = dict(eps=self.eps, norm=self.norm, batch_size=self.batch_size, seed=self.seed)
        return [("apgd_ce", APGDCE(steps=self.steps, **common)),
                ("apgd_dlr", APGDDLR(steps=self.steps, **common)),
                ("square", Square(queries=self.square_queries, **common))]

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = x.detach().clone()
        if x.shape[0] == 0 or self.eps == 0:
            return x_adv
        with eval_mode(model), torch.no_grad():
            logits = model(x)
        robust = logits.argmax(1) == y
        for name, attack in self.components():
            if name == "apgd_dlr" and logits.shape[1] < 3:
                continue  # the DLR loss needs the three largest logits
            index = robust.nonzero().flatten()
            if index.numel() == 0:
                break
            candidate = attack(model, x[index], y[index])
            with eval_mode(model), torch.no_grad():
                broken = model(candidate).argmax(1) != y[index]
            x_adv[index[broken]] = candidate[broken]
            robust[index[broken]] = False
        return x_adv
