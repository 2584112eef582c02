"""The run report: ``report.md`` and a self-contained ``report.html``, rebuilt from the
database by ``robustlr report DIR``.

It opens with the verdict per threat model (sentences, frontiers, rankings); the evidence
sections (trajectories, privacy, poisoning, sensitivity, cost) follow."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustlr.config import SELECTION_EPSILON
from robustlr.results.report.averaging import averaging_section
from robustlr.results.report.certified import certified_section
from robustlr.results.report.constraints import constrained_section
from robustlr.results.report.document import Document
from robustlr.results.report.plotting import Palette
from robustlr.results.report.poisoning import poisoning_section
from robustlr.results.report.privacy import privacy_section
from robustlr.results.report.ranking import ranking_section
from robustlr.results.report.robustness import robustness_section
from robustlr.results.report.sections import clean_sections, failures_section, status_line
from robustlr.results.report.sensitivity import sensitivity_section
from robustlr.results.report.setup import data_name, setup_text
from robustlr.results.report.slices import slices_section
from robustlr.results.report.verdict import verdict_section

Section = Callable[[Document, list[dict[str, Any]], list[dict[str, Any]]], None]

# The evidence after the verdict; each skips itself when its fields are absent.
SECTIONS: list[Section] = [clean_sections, robustness_section, slices_section, certified_section,
                           privacy_section,
                           poisoning_section, sensitivity_section, averaging_section, failures_section]


def compose(title: str, summaries: list[dict[str, Any]], rows: list[dict[str, Any]],
            ranking=None, data: str | None = None) -> Document:
    """The report as a document, not yet rendered. ``ranking`` (a config's ``report``
    settings) adds the ranking under constraints and chooses the LR scale per schedule
    (``select_lr``); ``data`` names the data set when the records do not."""
    document = Document(f"robustlr report: {title}",
                        palette=Palette(str(r.get("schedule")) for r in summaries))
    status_line(document, summaries, setup_text(summaries, data))
    judged = verdict_section(document, summaries, getattr(ranking, "select_lr", "none"),
                             getattr(ranking, "selection_epsilon", SELECTION_EPSILON), rows)
    document.verdicts = judged
    constrained_section(document, summaries, ranking)
    ranking_section(document, judged)
    for section in SECTIONS:
        section(document, summaries, rows)
    return document


def build_report(run_dir: Path, title: str, summaries: list[dict[str, Any]],
                 rows: list[dict[str, Any]], ranking=None) -> None:
    compose(title, summaries, rows, ranking, data_name(run_dir)).render(run_dir)


__all__ = ["build_report", "compose", "SECTIONS", "Document"]
