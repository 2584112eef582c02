"""Probes: measurements the loop takes every epoch and once at the end, beside clean accuracy.

Robust accuracy, backdoor success and corruption accuracy are probes; the loop only runs
them inside ``modes.evaluating`` and stores whatever numbers they return.
"""

from __future__ import annotations

from robustlr.training.probes.backdoor import BackdoorProbe
from robustlr.training.probes.base import Probe
from robustlr.training.probes.certify import CertifyProbe
from robustlr.training.probes.membership import MembershipProbe
from robustlr.training.probes.robustness import CorruptionProbe, RobustnessProbe
from robustlr.training.selection import selects_robust


def build_probes(config, trial, data, poison=None) -> list[Probe]:
    """The probes a trial's config asks for; ``poison`` is a backdoor to measure, if any."""
    evaluation, seed = config.evaluation, config.data.split_seed
    probes: list[Probe] = []
    if evaluation.attack is not None:
        from robustlr.regimes import REGIMES

        loss_kind = REGIMES.build(trial.regime).loss_kind  # a class attribute; nothing trains
        probes.append(RobustnessProbe(
            attack=evaluation.attack, final=list(evaluation.final), test=data.test,
            val=data.val, subset=evaluation.subset, seed=seed, sanity_checks=evaluation.sanity,
            batch_size=evaluation.batch_size, select_robust=selects_robust(evaluation, loss_kind),
            final_subset=evaluation.final_subset))
    if evaluation.corruptions:
        probes.append(CorruptionProbe(test=data.test, seed=seed, batch_size=evaluation.batch_size))
    if evaluation.membership:
        # 0.1 / N, the DP regime's default delta (a regime's own delta is not passed here)
        delta = 0.1 / len(data.train[1])
        probes.append(MembershipProbe(train=data.train, test=data.test, delta=delta, seed=seed,
                                      batch_size=evaluation.batch_size))
    if evaluation.certify is not None:
        probes.append(CertifyProbe(settings=evaluation.certify, test=data.test, seed=seed,
                                   regime=trial.regime, batch_size=evaluation.batch_size))
    if poison is not None:
        probes.append(BackdoorProbe(poison, data.test, evaluation.batch_size))
    return probes

__all__ = ["Probe", "build_probes"]
