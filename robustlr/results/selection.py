"""The privacy cost of what the report chooses among DP trials (docs/privacy-ledger.md,
"Choosing with private data").

Within a DP threat model the report chooses twice: each schedule's LR scale on validation
accuracy (``report.select_lr: validation``), and a leader among the schedules on test
accuracy. A chosen model is a post-processing of every run its choice read, so its ledger is
those runs' DP-SGD composed by the accountant, their other entries added, and the choices'
own costs: report-noisy-max on the private validation split (``report.selection_epsilon``
each), nothing for a validation split the user declared public (``data.public_validation``)
or for the test split, which lies outside the training data the epsilon protects (the report
prints its accuracies exactly).

:func:`chosen_ledger` computes such a ledger from trial summaries, :func:`choose_scale` makes
the LR choice, and :func:`planned_selection_entries` tells a config-time check what the
choices will cost before anything trains.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from robustlr.privacy.accounting import BOUNDS, History
from robustlr.privacy.ledger import Entry, Ledger
from robustlr.privacy.selection import basic_candidates_entry, candidates_entry, choice_entry, report_noisy_max
from robustlr.results.stats import finite
from robustlr.spec import SpecError, parse

SCALE_CHOICE = "lr_choice"
LEADER_CHOICE = "leader_choice"
CHOICES = (SCALE_CHOICE, LEADER_CHOICE)
"""Entry names of choices; a trial that reserved one in its own ledger does not pay it again
once per candidate run (the choice is made once, and added once)."""
_TRAINING = ("subsampled_gaussian", "shuffled_gaussian")


def run_ledger(record: dict[str, Any]) -> Ledger:
    """A trial's ledger: its ``privacy_ledger``, else (an older summary) its DP-SGD alone."""
    rows = record.get("privacy_ledger")
    if rows:
        return Ledger.from_records(rows)
    eps = record.get("epsilon")
    return Ledger((Entry(name="dp_sgd", mechanism="subsampled_gaussian",
                         epsilon=math.inf if eps is None else float(eps),
                         delta=float(record.get("delta") or 0.0)),))


def _scheduled(record: dict[str, Any]) -> bool:
    try:
        return parse(str(record.get("regime"))).kwargs.get("noise_schedule") is not None
    except (SpecError, AttributeError):
        return True  # unknown: no history is guessed


def run_history(record: dict[str, Any], training: Entry) -> History | None:
    """The Opacus history of a trial's DP-SGD: its entry's ``history`` when recorded, else
    (sigma, sample rate, steps) at the entry's constant noise, or at a noise schedule's
    smallest noise (less noise never spends less: an upper bound); None when unknown."""
    detail = training.detail
    if detail.get("history"):
        return [(float(s), float(q), int(n)) for s, q, n in detail["history"]]
    noise: Any = detail.get("noise")
    if noise is None and not _scheduled(record):
        noise = record.get("noise_multiplier")
    if isinstance(noise, dict):
        noise = noise.get("min")
    rate = detail.get("sample_rate", record.get("sample_rate"))
    steps = detail.get("steps", record.get("dp_steps"))
    sigma, q, count = finite(noise), finite(rate), finite(steps)
    if sigma is None or q is None or count is None:
        return None
    return [(sigma, q, int(count))]


def _training_entry(runs: Sequence[dict[str, Any]]) -> Entry:
    pairs = [(run, entry) for run in runs for entry in run_ledger(run).entries
             if entry.mechanism in _TRAINING]
    if not pairs:
        return basic_candidates_entry([], [])
    histories = [run_history(run, entry) for run, entry in pairs]
    if all(entry.mechanism == "subsampled_gaussian" for _, entry in pairs) and all(
            h is not None for h in histories):
        accountants = {str(entry.detail.get("accountant", run.get("accountant", "prv")))
                       for run, entry in pairs}
        accountant = "prv" if accountants <= {"prv"} or not accountants <= set(BOUNDS) else "rdp"
        delta = min(entry.delta for _, entry in pairs)
        return candidates_entry([h for h in histories if h is not None], delta=delta,
                                accountant=accountant)
    return basic_candidates_entry([e.epsilon for _, e in pairs], [e.delta for _, e in pairs])


def _other_entries(runs: Sequence[dict[str, Any]]) -> list[Entry]:
    """The runs' entries besides DP-SGD and reserved choices, one per name: added over the
    runs (basic composition), once when every run says it released the same value
    (``detail.shared``) or when they cost nothing."""
    by_name: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for run in runs:
        for entry in run_ledger(run).entries:
            if entry.mechanism not in _TRAINING and entry.name not in CHOICES:
                by_name[(entry.name, entry.mechanism)].append(entry)
    merged = []
    for (name, mechanism), entries in by_name.items():
        if len(entries) == 1 or not any(e.epsilon or e.delta for e in entries) or all(
                e.detail.get("shared") for e in entries):
            merged.append(entries[0])
        elif mechanism == "none":
            merged.append(Entry(name=name, mechanism="none", epsilon=math.inf,
                                detail={"runs": len(entries)}))
        else:
            merged.append(Entry(name=name, mechanism="composition",
                                epsilon=math.fsum(e.epsilon for e in entries),
                                delta=min(1.0, math.fsum(e.delta for e in entries)),
                                detail={"of": mechanism, "runs": len(entries)}))
    return merged


def chosen_ledger(runs: Sequence[dict[str, Any]], choices: Sequence[Entry] = ()) -> Ledger:
    """The ledger of one model chosen among ``runs`` (every run the choice read) by
    ``choices``: the runs' DP-SGD composed, their other entries, then the choices."""
    return Ledger((_training_entry(runs), *_other_entries(runs), *choices))


def _seeded(runs: Sequence[dict[str, Any]], what: str) -> np.random.Generator:
    """A generator fixed by the candidates' trial ids (themselves fixed by the config), so a
    rebuilt report makes the same choice."""
    text = what + "|" + "|".join(sorted(str(r.get("trial")) for r in runs))
    return np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))


def _mean_count(runs: list[dict[str, Any]], key: str) -> float | None:
    """Mean over the runs of the correct count on the validation split (a count moves by at
    most 1 when one example changes, and so does the mean)."""
    counts = []
    for run in runs:
        acc, size = finite(run.get(key)), finite(run.get("val_examples"))
        if acc is None or size is None:
            return None
        counts.append(round(acc * size))
    return sum(counts) / len(counts)


def choose_scale(by_scale: dict[float, list[dict[str, Any]]], key: str, *,
                 epsilon: float) -> tuple[float, Entry]:
    """The LR scale chosen for one schedule of a DP threat model, and the choice's entry:
    exact on a declared-public validation split, report-noisy-max on the mean validation
    correct count otherwise (no finite epsilon if the runs did not record their count)."""
    scales = sorted(by_scale)
    runs = [r for scale in scales for r in by_scale[scale]]
    info: dict[str, Any] = {"by": key, "scales": scales, "runs": len(runs)}
    means = {s: _mean([r.get(key) for r in by_scale[s]]) for s in scales}
    if all(m is None for m in means.values()):  # nothing measured: data-independent
        return scales[0], choice_entry(SCALE_CHOICE, candidates=len(scales), epsilon=None,
                                       public=True, detail={**info, "data": "none"})
    ranked = {s: -math.inf if m is None else m for s, m in means.items()}
    exact = max(scales, key=ranked.__getitem__)
    if all(r.get("public_validation") is True for r in runs):
        return exact, choice_entry(SCALE_CHOICE, candidates=len(scales), epsilon=None,
                                   public=True, detail={**info, "data": "validation (public)"})
    counts = [_mean_count(by_scale[s], key) for s in scales]
    if any(c is None for c in counts):
        return exact, choice_entry(SCALE_CHOICE, candidates=len(scales), epsilon=None,
                                   detail={**info, "data": "validation (exact)"})
    index = report_noisy_max([float(c) for c in counts if c is not None], epsilon=epsilon,
                             sensitivity=1.0, rng=_seeded(runs, SCALE_CHOICE))
    size = min(float(r["val_examples"]) for r in runs)
    return scales[index], choice_entry(SCALE_CHOICE, candidates=len(scales), epsilon=epsilon,
                                       detail={**info, "data": "validation", "sensitivity": 1,
                                               "gumbel_scale_points": 200 / (epsilon * size)})


def _mean(values: Sequence[Any]) -> float | None:
    present = [v for v in (finite(x) for x in values) if v is not None]
    return sum(present) / len(present) if present else None


def leader_choice(candidates: int, runs: int) -> Entry:
    """The leader among a threat model's schedules, chosen on test accuracy: outside the
    protected training data, so the choice adds nothing beyond the runs it read."""
    return choice_entry(LEADER_CHOICE, candidates=candidates, epsilon=None, public=True,
                        detail={"data": "test", "runs": runs})


def planned_selection_entries(config, regime: Any = None) -> tuple[Entry, ...]:
    """The choices' own entries that one model chosen by the report will carry, known from
    ``config`` before anything trains: an LR choice when ``report.select_lr`` is validation
    and a DP regime's grid has several LR scales (report-noisy-max at
    ``report.selection_epsilon``, or public under ``data.public_validation``). ``regime``
    (a spec, as in a trial) limits them to that regime's grids. The composition of the
    candidate runs is not planned here: it follows from the runs, and the report states it.
    """
    if config.report.select_lr != "validation":
        return ()
    entries = []
    for dimensions in config.dimension_sets():
        scales = len(set(dimensions["lr_scales"]))
        for spec in dimensions["regimes"]:
            if scales < 2 or not _is_dp(spec) or (regime is not None
                                                   and _text(spec) != _text(regime)):
                continue
            entries.append(choice_entry(
                SCALE_CHOICE, candidates=scales, public=config.data.public_validation,
                epsilon=config.report.selection_epsilon,
                detail={"regime": _text(spec), "data": "validation (public)"
                        if config.data.public_validation else "validation"}))
    unique = {(e.detail["regime"], e.detail["candidates"]): e for e in entries}
    return tuple(unique.values())


def _is_dp(spec: Any) -> bool:
    try:
        return parse(spec).name == "dp"
    except SpecError:
        return False


def _text(spec: Any) -> str:
    try:
        return str(parse(spec))
    except SpecError:
        return str(spec)
