"""The run report: ``report.md`` and a self-contained ``report.html``, rebuilt from the
database by ``robustlr report DIR``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustlr.results.report.constraints import constrained_section
from robustlr.results.report.document import Document
from robustlr.results.report.frontiers import frontier_section
from robustlr.results.report.poisoning import poisoning_section
from robustlr.results.report.privacy import privacy_section
from robustlr.results.report.robustness import robustness_section
from robustlr.results.report.sections import clean_sections
from robustlr.results.report.sensitivity import sensitivity_section

Section = Callable[[Document, list[dict[str, Any]], list[dict[str, Any]]], None]

# Later threat models append their sections here; each skips itself when its fields are absent.
SECTIONS: list[Section] = [clean_sections, robustness_section, privacy_section,
                           poisoning_section, frontier_section, sensitivity_section]


def build_report(run_dir: Path, title: str, summaries: list[dict[str, Any]],
                 rows: list[dict[str, Any]], ranking=None) -> None:
    """``ranking`` (a config's ``report`` settings) adds the ranking under constraints."""
    document = Document(f"robustlr report: {title}")
    for section in SECTIONS:
        section(document, summaries, rows)
    constrained_section(document, summaries, ranking)
    document.render(run_dir)


__all__ = ["build_report", "SECTIONS", "Document"]
