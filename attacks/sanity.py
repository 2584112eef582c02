"""Checks that flag evaluations which may be invalid; they return warnings, never raise.

In the spirit of AutoAttack's ``checks.py`` and of the gradient-masking signs listed by
Athalye et al., "Obfuscated Gradients Give a False Sense of Security", ICML 2018
(https://arxiv.org/abs/1802.00420) and Carlini et al., "On Evaluating Adversarial
Robustness", 2019 (https://arxiv.org/abs/1902.06705): a stronger attack must not leave more
points robust than a weaker one, robust accuracy must not rise with epsilon, a black-box
attack beating white-box PGD points to masked gradients, and PGD at eps=0 must be a no-op.

Accuracies are fractions in [0, 1]; ``tolerance`` absorbs sampling noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .art_adapters import Square
from .cascade import cascade
from .pgd import PGD, pgd


def check_strength_order(results: Sequence[tuple[str, float]], *,
                         tolerance: float = 0.005) -> list[str]:
    """``results`` ordered weaker -> stronger attack; warn where a stronger one did worse."""
    warnings = []
    for (weak, weak_acc), (strong, strong_acc) in zip(results, results[1:]):
        if strong_acc > weak_acc + tolerance:
            warnings.append(f"stronger attack {strong!r} left more points robust "
                            f"({strong_acc:.4f}) than weaker {weak!r} ({weak_acc:.4f}): "
                            "the attack is not converging or gradients are unreliable")
    return warnings


def check_eps_monotone(results: Sequence[tuple[float, float]], *,
                       tolerance: float = 0.005) -> list[str]:
    """``results`` as (eps, robust accuracy); warn where accuracy rises with eps."""
    warnings = []
    ordered = sorted(results)
    for (eps_a, acc_a), (eps_b, acc_b) in zip(ordered, ordered[1:]):
        if acc_b > acc_a + tolerance:
            warnings.append(f"robust accuracy rose from {acc_a:.4f} at eps={eps_a:g} to "
                            f"{acc_b:.4f} at eps={eps_b:g}: a sign of gradient masking")
    return warnings


def check_black_box_gap(white_box_acc: float, black_box_acc: float, *,
                        tolerance: float = 0.02) -> list[str]:
    """Warn when a black-box attack (Square) beats white-box PGD by more than ``tolerance``."""
    if black_box_acc < white_box_acc - tolerance:
        return [f"black-box attack reached robust accuracy {black_box_acc:.4f}, below "
                f"white-box PGD's {white_box_acc:.4f}: gradients may be masked"]
    return []


def check_eps_zero(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[str]:
    """PGD with eps=0 must return its input exactly."""
    x_adv = pgd(model, x, y, eps=0.0, step_size=0.1, steps=3)
    if x_adv.shape != x.shape or not torch.equal(x_adv, x):
        return ["PGD with eps=0 changed its input"]
    return []


def run_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
               steps: int = 10, square_queries: int = 300, seed: int = 0) -> list[str]:
    """Run all checks with PGD-steps vs PGD-4*steps x 2 restarts, eps/2..2*eps and Square.

    Costs about 20 * steps forward-backward passes plus ``square_queries`` forward passes.
    """
    def acc(attack: PGD | Square) -> float:
        return cascade(model, x, y, [("a", attack)]).robust_acc

    weak = acc(PGD(eps=eps, steps=steps, seed=seed))
    strong = acc(PGD(eps=eps, steps=4 * steps, restarts=2, seed=seed))
    by_eps = [(e, acc(PGD(eps=e, steps=steps, seed=seed))) for e in (eps / 2, 2 * eps)]
    square = acc(Square(eps=eps, queries=square_queries, seed=seed))
    return (check_eps_zero(model, x, y)
            + check_strength_order([("pgd", weak), ("pgd_strong", strong)])
            + check_eps_monotone(by_eps + [(eps, weak)])
            + check_black_box_gap(min(weak, strong), square))
