"""A tiny document model rendered twice: ``report.md`` (figures as files beside it) and a
self-contained ``report.html`` (figures embedded), so both always say the same thing."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from robustlr.results.nofollow import write_atomic  # noqa: E402
from robustlr.results.report.plotting import Palette  # noqa: E402


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    groups: list[tuple[str, int]] = field(default_factory=list)  # (label, columns) above header
    name: str = ""  # the HTML id, for tables a reader (or a test) looks up


@dataclass
class Plot:
    name: str  # file stem under figures/
    figure: Figure
    caption: str


@dataclass
class Document:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)  # (kind, text/Table/Plot/list)
    palette: Palette = field(default_factory=lambda: Palette([]))  # one colour per schedule
    verdicts: list[Any] = field(default_factory=list)  # the verdict's Judged, for sections that restate it

    def heading(self, text: str) -> None:
        self.blocks.append(("heading", text))

    def text(self, text: str) -> None:
        self.blocks.append(("text", text))

    def bullets(self, items: list[str]) -> None:
        self.blocks.append(("bullets", list(items)))

    def table(self, header: list[str], rows: list[list[str]], *,
              groups: list[tuple[str, int]] | None = None, name: str = "") -> None:
        """``groups`` spans a label over consecutive columns, in a row above the header."""
        self.blocks.append(("table", Table(header, rows, list(groups or []), name)))

    def plot(self, name: str, figure: Figure, caption: str) -> None:
        self.blocks.append(("plot", Plot(name, figure, caption)))

    def render(self, run_dir: Path) -> None:
        figures = run_dir / "figures"
        figures.mkdir(exist_ok=True)
        markdown, body = [f"# {self.title}", ""], [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "heading":
                markdown += [f"## {value}", ""]
                body.append(f"<h2>{html.escape(value)}</h2>")
            elif kind == "text":
                markdown += [value, ""]
                body.append(f"<p>{html.escape(value)}</p>")
            elif kind == "bullets":
                markdown += [f"- {item}" for item in value] + [""]
                body.append('<ul class="verdict">' + "".join(
                    f"<li>{html.escape(item)}</li>" for item in value) + "</ul>")
            elif kind == "table":
                markdown += _markdown_table(value) + [""]
                body.append(_html_table(value))
            else:
                png = _png(value.figure)
                write_atomic(figures / f"{value.name}.png", png)
                markdown += [f"![{value.caption}](figures/{value.name}.png)", "", f"*{value.caption}*", ""]
                encoded = base64.b64encode(png).decode()
                body.append(f'<figure id="{value.name}"><img alt="{html.escape(value.caption)}" '
                            f'src="data:image/png;base64,{encoded}"><figcaption>'
                            f"{html.escape(value.caption)}</figcaption></figure>")
        _write(run_dir / "report.md", "\n".join(markdown))
        _write(run_dir / "report.html", _page(self.title, "\n".join(body)))


def _png(figure: Figure) -> bytes:
    if figure.get_layout_engine() is None:
        # stacked panels otherwise print one panel's title over the x label of the one above
        figure.set_layout_engine("constrained")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _markdown_table(table: Table) -> list[str]:
    header = table.header
    if table.groups:  # Markdown has no spans: the group goes before each column's name
        names = [label for label, span in table.groups for _ in range(span)]
        header = [f"{group}: {name}" if group else name for group, name in zip(names, header)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return lines


def _html_table(table: Table) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in table.header) + "</tr>"
    if table.groups:
        head = "<tr>" + "".join(f'<th colspan="{span}">{html.escape(label)}</th>'
                                for label, span in table.groups) + "</tr>" + head
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in table.rows)
    ident = f' id="{html.escape(table.name)}"' if table.name else ""
    return f"<table{ident}><thead>{head}</thead><tbody>{rows}</tbody></table>"


def _page(title: str, body: str) -> str:
    # wide enough that the verdict, the cost table and the frontiers fit a 1,400 x 1,200 screen
    style = ("body{font-family:system-ui,sans-serif;max-width:1320px;margin:1.2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;"
             "padding:2px 8px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
             "th[colspan]{text-align:center}tr th:first-child{text-align:left}p{margin:.5em 0}"
             "img{max-width:100%}figcaption{color:#555;font-size:90%}"
             "ul.verdict{margin:.4em 0;padding-left:1.2em}ul.verdict li{margin:.2em 0}"
             "h1{font-size:1.5em;margin:.3em 0}h2{font-size:1.3em;margin:.7em 0 .3em}")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>"
            f"{html.escape(title)}</title><style>{style}</style></head><body>{body}</body></html>\n")


def _write(path: Path, text: str) -> None:
    write_atomic(path, text)  # never through a link planted in the run folder
