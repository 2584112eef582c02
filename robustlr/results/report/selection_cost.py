"""What the report's choices cost under DP: per schedule, the epsilon of one trial and of the
chosen model with its selection included, and the epsilon of the leader (chosen among every
run of the threat model). The reasoning is in docs/privacy-ledger.md, "Choosing with private
data"; the ledgers come from robustlr/results/selection.py."""

from __future__ import annotations

import math

from robustlr.privacy.ledger import Entry, Ledger
from robustlr.results.report.document import Document
from robustlr.results.report.threats import Judged
from robustlr.results.selection import chosen_ledger, leader_choice, run_ledger
from robustlr.results.stats import group


def attach_costs(judged: Judged, records: list[dict], choices: dict[str, Entry]) -> None:
    """Give a DP threat model's entries and leader the ledgers of their chosen models:
    ``records`` are all its trials, ``choices`` the LR choice per schedule."""
    if judged.threat.kind != "dp" or not judged.entries:
        return
    by_schedule = group(records, ("schedule",))
    for entry in judged.entries:
        if entry.schedule in choices:
            entry.privacy = chosen_ledger(by_schedule[(entry.schedule,)], [choices[entry.schedule]])
    if len(judged.entries) > 1:
        judged.leader_privacy = chosen_ledger(
            records, [*choices.values(), leader_choice(len(judged.entries), len(records))])
    else:
        judged.leader_privacy = judged.entries[0].privacy


def per_trial(runs: list[dict]) -> float:
    """The epsilon one trial of ``runs`` carries: the largest total among them."""
    return max((run_ledger(r).epsilon for r in runs), default=math.nan)


def _eps(value: float) -> str:
    return "∞ (no DP guarantee)" if not math.isfinite(value) else f"{value:.2f}"


def _runs(ledger: Ledger) -> int:
    return int(ledger.entries[0].detail.get("runs", 1)) if ledger.entries else 0


def _how(ledger: Ledger) -> str:
    choices = [e for e in ledger.entries if e.name in ("lr_choice", "leader_choice")]
    noisy = [e for e in choices if e.mechanism == "report_noisy_max"]
    parts = []
    if noisy:
        parts.append(f"{len(noisy)} LR choice{'s' if len(noisy) > 1 else ''} by report-noisy-max "
                     f"on private validation (ε = {noisy[0].epsilon:g}"
                     f"{' each' if len(noisy) > 1 else ''})")
    public = [e for e in choices if e.name == "lr_choice" and e.mechanism == "public"]
    if public:
        parts.append(f"{len(public)} LR choice{'s' if len(public) > 1 else ''} on public validation")
    exact = [e for e in choices if e.mechanism == "none"]
    if exact:
        parts.append(f"{len(exact)} exact choice{'s' if len(exact) > 1 else ''} on private "
                     "validation (no size recorded: no finite ε)")
    if any(e.name == "leader_choice" for e in choices):
        parts.append("the leader on test accuracy (free: test data is not training data)")
    return "; ".join(parts)


def _short(ledger: Ledger) -> str:
    choices = [e for e in ledger.entries if e.name == "lr_choice"]
    noisy = [e for e in choices if e.mechanism == "report_noisy_max"]
    parts = [f"{_runs(ledger)} runs"]
    if noisy:
        parts.append(f"{len(noisy)} noisy LR choice{'s' if len(noisy) > 1 else ''} at "
                     f"ε = {noisy[0].epsilon:g}")
    if len(noisy) < len(choices):
        parts.append(f"{len(choices) - len(noisy)} other LR choice"
                     f"{'s' if len(choices) - len(noisy) > 1 else ''}")
    if any(e.name == "leader_choice" for e in ledger.entries):
        parts.append("leader on test accuracy")
    return ", ".join(parts)


def cost_clause(judged: Judged) -> str:
    """The verdict's privacy sentence for a DP threat model ('' for any other)."""
    leader, ledger = (judged.entries[0] if judged.entries else None), judged.leader_privacy
    if judged.threat.kind != "dp" or leader is None:
        return ""
    one = per_trial([r for e in judged.entries for r in e.runs])
    if ledger is None:
        return f" Privacy: ε = {_eps(one)} per trial; no choice was made among trials."
    return (f" Privacy: ε = {_eps(one)} per trial; ε = {_eps(ledger.epsilon)} "
            f"(δ = {ledger.delta:.1g}) for the leader with its selection included "
            f"({_short(ledger)}; table below).")


def cost_table(document: Document, judged: list[Judged]) -> None:
    """One row per DP schedule (and its leader): which epsilon applies to which model."""
    rows = []
    for item in judged:
        if item.threat.kind != "dp" or not item.entries:
            continue
        for entry in item.entries:
            ledger = entry.privacy
            rows.append([item.threat.name, entry.label, _eps(per_trial(entry.runs)),
                         str(_runs(ledger)) if ledger else "1",
                         _eps(ledger.epsilon) if ledger else "= one trial",
                         _how(ledger) if ledger else "no choice"])
        if item.leader_privacy is not None and len(item.entries) > 1:
            ledger = item.leader_privacy
            rows.append([item.threat.name, f"leader: {item.entries[0].label}", "",
                         str(_runs(ledger)), _eps(ledger.epsilon), _how(ledger)])
    if not rows:
        return
    document.text("Privacy of what the report chooses. 'ε of one trial' applies to any single "
                  "trial's model taken as trained (every per-trial number in this report). "
                  "'ε of the chosen model' applies to the model the report points you to: "
                  "choosing it read every run listed, so their DP-SGD composes (the "
                  "accountant, one longer run) and each choice on private data adds its own "
                  "ε (docs/privacy-ledger.md).")
    document.table(["DP threat model", "schedule", "ε of one trial", "runs the choice read",
                    "ε of the chosen model, selection included", "choices"], rows)
