"""The ranking of every threat model, in one table: each schedule's metrics with seed
intervals and its paired, Holm-corrected difference from the leader (see verdict.py)."""

from __future__ import annotations

from robustlr.results.report.document import Document
from robustlr.results.report.plotting import scale
from robustlr.results.report.threats import NAMES, Entry, Judged


def ranking_section(document: Document, judged: list[Judged]) -> None:
    """The ranking of every threat model: one table, threat models in reading order."""
    if not judged:
        return
    table = []
    for item in judged:
        threat = item.threat
        metrics = list(dict.fromkeys([threat.primary, threat.x, threat.y]))
        for rank, entry in enumerate(item.entries, 1):
            cells = [f"{NAMES.get(m, m)} {entry.means[m].text(scale=scale(m), digits=1 if scale(m) == 100 else 2)}"
                     for m in metrics]
            if entry.privacy is not None:  # DP: the model this row points to, choice included
                cells.append(f"epsilon of the chosen model {entry.privacy.epsilon:.2f}")
            versus = "leader" if entry.versus is None else _versus(entry, item, threat.primary)
            table.append([threat.name, str(rank), entry.label, str(len(entry.runs)),
                          "; ".join(cells), versus, "yes" if entry.front else ""])
    document.heading("Ranking per threat model")
    document.text("Ranked by the threat model's main metric (seed mean ± 95% t-interval). "
                  "'vs leader': paired difference ± 95% interval over shared seeds, and the "
                  "Holm-corrected p-value of a paired t-test over seeds; for a share of test "
                  "examples (accuracy, attack success), the larger of that and an exact sign "
                  "test over the fewest test examples that make the gaps, and a mean gap of one "
                  "example or less is never behind.")
    document.table(["threat model", "rank", "schedule", "seeds", "metrics", "vs leader",
                    "on frontier"], table)


def _versus(entry: Entry, item: Judged, metric: str) -> str:
    diff = entry.versus
    if diff is None or diff.n == 0:
        return "no shared seed"
    if diff.n == 1:
        return f"{diff.mean * scale(metric):+.1f} (1 seed)"
    verdict = "tied" if item.tied(entry) else "behind"
    return (f"{diff.mean * scale(metric):+.1f} ± {diff.half * scale(metric):.1f}, "
            f"p={entry.p_holm:.3f} ({verdict})")
