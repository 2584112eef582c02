"""The report's weight-averaging section: raw and averaged robust trajectories per schedule,
with the overfitting gap of each, and nothing when no trial averaged."""

from __future__ import annotations

from robustlr.results.report.averaging import averaging_section
from robustlr.results.report.document import Document


def _trial(name: str, averaging: str, raw: list[float], averaged: list[float]):
    summary = {"trial": name, "schedule": "cosine", "regime": "pgd_at(eps=0.1)", "seed": 0,
               "averaging": averaging, "status": "ok", "monitor_robust_acc": raw[-1],
               "avg_monitor_robust_acc": averaged[-1]}
    rows = [{"trial": name, "epoch": e + 1, "monitor_robust_acc": r, "avg_monitor_robust_acc": a}
            for e, (r, a) in enumerate(zip(raw, averaged))]
    return summary, rows


def test_the_section_shows_how_averaging_changes_the_robust_overfitting_gap():
    # the raw weights overfit robustly (peak 0.5, final 0.3); the average holds 0.45
    summary, rows = _trial("a", "swa(start=0.5)", [0.2, 0.5, 0.4, 0.3], [0.2, 0.45, 0.45, 0.45])
    document = Document("t")
    averaging_section(document, [summary], rows)
    assert ("heading", "Weight averaging and robust overfitting") in document.blocks
    (table,) = [block for kind, block in document.blocks if kind == "table"]
    (line,) = table.rows
    assert dict(zip(table.header, line))["raw gap"].startswith("20.0")
    assert dict(zip(table.header, line))["averaged gap"].startswith("0.0")
    assert any(kind == "plot" for kind, _ in document.blocks)


def test_the_section_skips_itself_without_averaged_trials():
    summary, rows = _trial("b", "none", [0.2, 0.3], [0.2, 0.3])
    document = Document("t")
    averaging_section(document, [summary], rows)
    assert document.blocks == []
