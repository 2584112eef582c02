"""Threat models: the report judges schedules within one threat model at a time (standard
training, each adversarial regime, each DP epsilon level, each poisoning scenario), never
across them: a DP trial is not ranked beside a PGD-AT one. Each threat model names the two
metrics of its frontier and the one its ranking and verdict use.

With ``select_lr: validation`` each schedule is reported, within each threat model, at the LR
scale whose trials have the best mean validation accuracy (validation robust accuracy,
``monitor_val_robust_acc``, under an adversarial regime, where it is measured by default;
the report says when it was not): test numbers never choose the LR. Under DP that
choice reads the private validation split, so it is report-noisy-max with its own epsilon
(robustlr/results/selection.py), unless the trials declared the split public."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from robustlr.config import SELECTION_EPSILON
from robustlr.privacy.ledger import Entry as LedgerEntry
from robustlr.privacy.ledger import Ledger
from robustlr.records import LOWER_IS_BETTER, requested_epsilon
from robustlr.results.selection import choose_scale
from robustlr.results.stats import Interval, Paired, finite, group, interval
from robustlr.spec import is_none

BAD = ("failed", "diverged")


@dataclass(frozen=True)
class Threat:
    kind: str  # standard, adversarial, dp, poison
    name: str  # what a reader calls it: "pgd_at(eps=0.1)", "DP ε = 3", "badnets / filter none"
    x: str  # frontier axes (summary fields)
    y: str
    primary: str  # what the ranking and the verdict are about

    @property
    def order(self) -> tuple:
        return (("standard", "adversarial", "dp", "poison").index(self.kind),
                "filter none" not in self.name, self.name)  # unfiltered poison first


dp_level = requested_epsilon  # the epsilon a private trial was asked to stay within


def _kind_and_name(record: dict) -> tuple[str, str]:
    regime = str(record.get("regime"))
    if not (is_none(record.get("poison")) and is_none(record.get("filter"))):
        arm = f"{record.get('poison')} / filter {record.get('filter')}"
        return "poison", arm if regime == "standard" else f"{arm} / {regime}"
    if finite(record.get("epsilon")) is not None:
        level = dp_level(record)
        return "dp", f"DP ε = {level:g}" if level is not None else regime
    if record.get("dp_guarantee") is False:  # never under an epsilon level it does not meet
        return "dp", f"{regime}, no DP guarantee"
    return ("standard", "standard") if regime == "standard" else ("adversarial", regime)


def threat_of(record: dict, robust_measured: bool) -> Threat:
    kind, name = _kind_and_name(record)
    if kind == "poison":
        return Threat(kind, name, "asr", "clean_acc", "asr")
    if kind == "dp" and finite(record.get("epsilon")) is None:  # no epsilon to trade against
        return Threat(kind, name, "train_seconds", "clean_acc", "clean_acc")
    if kind == "dp":
        return Threat(kind, name, "epsilon", "clean_acc", "clean_acc")
    if robust_measured:
        primary = "robust_acc" if kind == "adversarial" else "clean_acc"
        return Threat(kind, name, "clean_acc", "robust_acc", primary)
    return Threat(kind, name, "train_seconds", "clean_acc", "clean_acc")


def split(summaries: list[dict]) -> dict[Threat, list[dict]]:
    """Finished trials by threat model, in reading order; failed and diverged trials are left
    out (the report lists them separately)."""
    usable = [r for r in summaries if r.get("status") not in BAD
              and finite(r.get("clean_acc")) is not None]
    by_name: dict[tuple, list[dict]] = defaultdict(list)
    for record in usable:
        by_name[_kind_and_name(record)].append(record)
    threats = {}
    for records in by_name.values():
        robust = any(finite(r.get("robust_acc")) is not None for r in records)
        threats[threat_of(records[0], robust)] = records
    return dict(sorted(threats.items(), key=lambda item: item[0].order))


def better(metric: str) -> int:
    return -1 if metric in LOWER_IS_BETTER else 1


ROBUST_VALIDATION = "monitor_val_robust_acc"


def _validation_key(records: list[dict], threat: Threat) -> str:
    return ROBUST_VALIDATION if threat.kind == "adversarial" and any(
        finite(r.get(ROBUST_VALIDATION)) is not None for r in records) else "val_acc"


def selection_text(threats: dict[Threat, list[dict]]) -> str:
    """What chose the LR scales, per threat model, for the report to name: robust validation
    accuracy under adversarial training when the trials recorded it, else clean validation
    accuracy, and a word where an adversarial threat model had to fall back to it."""
    robust = [t.name for t, runs in threats.items() if _validation_key(runs, t) == ROBUST_VALIDATION]
    clean = [t.name for t, runs in threats.items()
             if t.kind == "adversarial" and _validation_key(runs, t) != ROBUST_VALIDATION]
    text = "validation accuracy (val_acc)"
    if robust:
        text += (f"; under {', '.join(robust)} the best robust validation accuracy "
                 f"({ROBUST_VALIDATION}, as adversarial training is selected: Rice et al. 2020)")
    if clean:
        text += (f"; under {', '.join(clean)} clean validation accuracy, as its trials recorded "
                 f"no {ROBUST_VALIDATION} (evaluation.select: clean)")
    return text


def _validation_score(records: list[dict], threat: Threat) -> float:
    value = interval([r.get(_validation_key(records, threat)) for r in records]).mean
    return value if math.isfinite(value) else -math.inf


def select_scales(records: list[dict], threat: Threat, mode: str, selection_epsilon: float = SELECTION_EPSILON
                  ) -> tuple[list[dict], dict[str, float], dict[str, LedgerEntry]]:
    """The trials to report for ``threat``, the LR scale chosen per schedule (empty when
    ``mode`` is none or a schedule ran at one scale only) and, under DP, each choice's
    privacy-ledger entry."""
    if mode != "validation":
        return records, {}, {}
    kept, chosen, entries = [], {}, {}
    for (schedule,), runs in group(records, ("schedule",)).items():
        by_scale = group(runs, ("lr_scale",))
        if threat.kind == "dp" and len(by_scale) > 1:
            scale, entries[schedule] = choose_scale({k[0]: v for k, v in by_scale.items()},
                                                    _validation_key(runs, threat),
                                                    epsilon=selection_epsilon)
            best = (scale,)
        else:
            best = max(by_scale, key=lambda key: _validation_score(by_scale[key], threat))
        kept += by_scale[best]
        if len(by_scale) > 1:
            chosen[schedule] = best[0]
    return kept, chosen, entries


def group_label(schedule: str, scale: float | None, chosen: dict[str, float]) -> str:
    """The schedule, with its LR scale when it is not 1 or when it was selected."""
    if schedule in chosen:
        return f"{schedule} (x{scale:g} chosen)"
    return schedule + ("" if scale in (None, 1.0) else f" x{scale:g}")


ALPHA = 0.05
NAMES = {"clean_acc": "clean accuracy", "robust_acc": "robust accuracy", "asr": "attack success",
         "epsilon": "epsilon per trial", "train_seconds": "training time"}



@dataclass
class Entry:
    schedule: str
    label: str
    runs: list[dict]
    means: dict[str, Interval]
    versus: Paired | None = None  # this minus the leader, on the primary metric
    p_holm: float = math.nan
    front: bool = False
    privacy: Ledger | None = None  # DP: the chosen model's ledger, when a choice was made


@dataclass
class Judged:
    threat: Threat
    entries: list[Entry]  # ranked, leader first
    seeds: int
    leader_privacy: Ledger | None = None  # DP: the leader's ledger, every choice included
    examples: int | None = None  # test examples the primary metric counts (None: not a share)

    def tied(self, entry: Entry) -> bool:
        return not (math.isfinite(entry.p_holm) and entry.p_holm < ALPHA)
