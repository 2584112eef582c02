"""A run beside a published figure: mean and 95% interval over seeds, "reproduced within X
points" or "differs by Y", and, when given, a plain-torch reference of the same recipe.

The published figures live in ``experiments/reproductions/published.yaml``, one entry per
reproduction (see that file for the fields); an entry compares one headline metric and,
under ``also``, further metrics of the same run (e.g. clean beside robust accuracy), each
with its own published value, tolerance and source. Values are in points (percent). A run is
read from its ``results.sqlite``: the per-epoch records of every trial, at the last epoch
(every trial must have finished) or at a chosen ``epoch`` (a run stopped early; with a
constant schedule and a fixed noise multiplier, epoch E of a longer run is an E-epoch run). A
metric measured once at the end (``robust_acc``, the final attack cascade) is read from the
trial's summary, at the last epoch only.
"""

from __future__ import annotations

import html
import json
import math
import sqlite3
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from robustlr.errors import InputError

UNFINISHED = ("pending", "running", "failed")
"""Trial statuses without a last epoch to compare (a capped trial, budget_exhausted, has one)."""
REQUIRED = ("config", "metric", "published", "tolerance", "source", "citation", "protocol")
REQUIRED_ALSO = ("metric", "published", "tolerance", "source")
"""Fields of each further metric an entry compares (its ``also`` list)."""


@dataclass(frozen=True)
class SeedResult:
    seed: int
    value: float
    """The metric in points."""
    epoch: int
    epsilon: float | None = None
    train_seconds: float | None = None


@dataclass(frozen=True)
class Comparison:
    name: str
    published: float
    tolerance: float
    source: str
    seeds: list[SeedResult]
    mean: float
    half_width: float
    """Half the 95% Student-t interval of the mean over seeds (nan for one seed)."""
    verdict: str
    reference: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    also: list[Comparison] = field(default_factory=list)
    """The entry's further metrics, compared the same way."""

    @property
    def line(self) -> str:
        n = len(self.seeds)
        interval = "" if math.isnan(self.half_width) else f" ± {self.half_width:.2f}"
        return (f"{self.name}: published {self.published:.2f} vs robustlr {self.mean:.2f}"
                f"{interval} (mean ± 95% interval over {n} seed{'s' if n != 1 else ''}): "
                f"{self.verdict}")

    def record(self) -> dict[str, Any]:
        row = asdict(self)
        row["line"] = self.line
        row["half_width"] = None if math.isnan(self.half_width) else self.half_width
        row["also"] = [other.record() for other in self.also]
        return row


def load_published(path: Path) -> dict[str, dict[str, Any]]:
    import yaml

    try:
        entries = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"published figures: cannot read {str(path)!r} ({type(error).__name__})") from None
    if not isinstance(entries, dict):
        raise InputError(f"published figures: {str(path)!r} is not a mapping of reproductions")
    for name, entry in entries.items():
        missing = [key for key in REQUIRED if not isinstance(entry, dict) or key not in entry]
        if missing:
            raise InputError(f"published figures: {name!r} lacks {', '.join(missing)}")
        also = entry.get("also", [])
        if not isinstance(also, list):
            raise InputError(f"published figures: {name!r}: also must be a list of metrics")
        for position, part in enumerate(also):
            missing = [key for key in REQUIRED_ALSO if not isinstance(part, dict) or key not in part]
            if missing:
                raise InputError(f"published figures: {name!r} also[{position}] lacks {', '.join(missing)}")
    return entries


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half width of its 95% Student-t interval (nan below two values)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    from scipy import stats

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def verdict(mean: float, published: float, tolerance: float) -> str:
    gap = mean - published
    if abs(gap) <= tolerance:
        return f"reproduced within {abs(gap):.2f} points (tolerance {tolerance:g})"
    return f"differs by {gap:+.2f} points (tolerance {tolerance:g})"


def _read(run_dir: Path) -> tuple[list[tuple[str, str, str, str | None]], list[tuple[str, int, str]]]:
    database = run_dir / "results.sqlite"
    if not database.is_file():
        raise InputError(f"RUN_DIR: {str(run_dir)!r} has no results.sqlite (not a run folder?)")
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        trials = connection.execute("select trial, spec, status, summary from trials order by position").fetchall()
        rows = connection.execute("select trial, epoch, record from epochs").fetchall()
    if not trials:
        raise InputError(f"RUN_DIR: {str(run_dir)!r} has no trials")
    return trials, rows


def unfinished_seeds(run_dir: Path) -> list[int]:
    """Seeds of the run's trials that have no last epoch to compare (pending, running, failed)."""
    trials, _ = _read(run_dir)
    return [int(json.loads(spec)["seed"]) for _, spec, status, _ in trials if status in UNFINISHED]


def run_results(run_dir: Path, metric: str, epoch: int | None = None, *,
                finished_only: bool = False) -> list[SeedResult]:
    """One result per trial of the run in ``run_dir`` (see the module doc); with
    ``finished_only``, the trials not finished are left out instead of refused."""
    trials, rows = _read(run_dir)
    records: dict[str, dict[int, dict[str, Any]]] = {}
    for trial, number, record in rows:
        records.setdefault(trial, {})[int(number)] = json.loads(record)
    results = []
    for trial, spec, status, summary in trials:
        epochs = records.get(trial, {})
        if finished_only and status in UNFINISHED:
            continue
        if epoch is None and status in UNFINISHED:
            raise InputError(f"trial {trial} is {status}, not finished; give --epoch to compare "
                             "an epoch every trial reached")
        chosen = epoch if epoch is not None else max(epochs, default=0)
        if chosen not in epochs:
            raise InputError(f"trial {trial} has no epoch {chosen} (it reached {max(epochs, default=0)})")
        scored = epochs[chosen]
        if scored.get(metric) is None and chosen == max(epochs) and summary:
            scored = {**scored, metric: json.loads(summary).get(metric)}
        if scored.get(metric) is None:
            raise InputError(f"trial {trial}: epoch {chosen} has no {metric!r} (a metric of the "
                             "summary is read at the last epoch only)")
        seconds = sum(epochs[e].get("epoch_seconds") or 0.0 for e in epochs if e <= chosen)
        results.append(SeedResult(seed=int(json.loads(spec)["seed"]), value=100.0 * scored[metric],
                                  epoch=chosen, epsilon=scored.get("epsilon"), train_seconds=seconds))
    if not results:
        raise InputError(f"RUN_DIR: {str(run_dir)!r} has no finished trial")
    return results


def reference_results(path: Path, epoch: int | None = None, metric: str = "test_acc") -> list[SeedResult]:
    """Results of a plain reference script: its JSON (``{"results": [...]}``) or its log of
    JSON lines, one per epoch (``seed``, ``epoch``, ``test_acc``, ``epoch_seconds``)."""
    text = path.read_text()
    try:
        rows = json.loads(text)["results"]
        return [SeedResult(seed=r["seed"], value=100.0 * r[metric], epoch=r["epochs"],
                           epsilon=r.get("epsilon"), train_seconds=r.get("train_seconds"))
                for r in rows]
    except (json.JSONDecodeError, KeyError, TypeError):
        pass
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{") and '"epoch"' in line]
    by_seed: dict[int, list[dict[str, Any]]] = {}
    for line in lines:
        if "epoch_seconds" in line and isinstance(line.get("epoch"), int) and metric in line:
            by_seed.setdefault(line["seed"], []).append(line)
    results = []
    for seed, epochs in sorted(by_seed.items()):
        reached = [e for e in epochs if epoch is None or e["epoch"] <= epoch]
        if not reached or (epoch is not None and reached[-1]["epoch"] != epoch):
            continue
        results.append(SeedResult(seed=seed, value=100.0 * reached[-1][metric], epoch=reached[-1]["epoch"],
                                  epsilon=reached[-1].get("epsilon"),
                                  train_seconds=sum(e["epoch_seconds"] for e in reached)))
    if not results:
        raise InputError(f"--reference: {str(path)!r} has no {metric!r} result"
                         f"{'' if epoch is None else f' at epoch {epoch}'}")
    return results


def compare_run(name: str, entry: dict[str, Any], run_dir: Path, epoch: int | None = None,
                reference: Path | None = None, notes: list[str] | None = None, *,
                finished_only: bool = False) -> Comparison:
    """The entry's headline metric compared over the run's trials, with its ``also`` metrics."""

    def one(label: str, part: dict[str, Any]) -> Comparison:
        seeds = run_results(run_dir, part["metric"], epoch, finished_only=finished_only)
        plain = reference_results(reference, epoch, part["metric"]) if reference else None
        return compare(label, {**entry, **part}, seeds, plain, notes)

    headline = one(name, entry)
    others = [one(f"{name} {part['metric']}", part) for part in entry.get("also", [])]
    return replace(headline, also=others)


def compare(name: str, entry: dict[str, Any], seeds: list[SeedResult],
            reference: list[SeedResult] | None = None, notes: list[str] | None = None) -> Comparison:
    mean, half = interval([s.value for s in seeds])
    plain = None
    if reference:
        plain_mean, plain_half = interval([r.value for r in reference])
        ours = [s.train_seconds for s in seeds if s.train_seconds]
        theirs = [r.train_seconds for r in reference if r.train_seconds]
        ratio = (sum(ours) / len(ours)) / (sum(theirs) / len(theirs)) if ours and theirs else None
        plain = {"mean": plain_mean, "half_width": None if math.isnan(plain_half) else plain_half,
                 "seeds": [asdict(r) for r in reference], "time_ratio": ratio}
    return Comparison(name=name, published=float(entry["published"]), tolerance=float(entry["tolerance"]),
                      source=str(entry["source"]), seeds=seeds, mean=mean, half_width=half,
                      verdict=verdict(mean, float(entry["published"]), float(entry["tolerance"])),
                      reference=plain, notes=list(notes or []))


def markdown(comparison: Comparison, entry: dict[str, Any]) -> str:
    lines = [f"## Reproduction: {comparison.name}", "", comparison.line,
             *[other.line for other in comparison.also], "",
             f"- published: {comparison.published:g} ({comparison.source}; {entry['citation']})",
             *[f"- published {other.name}: {other.published:g} ({other.source})" for other in comparison.also],
             f"- protocol: {entry['protocol']}"]
    for part in (comparison, *comparison.also):
        lines += _seed_lines(part, header=bool(comparison.also))
    lines += [f"- note: {note}" for note in comparison.notes]
    return "\n".join(lines) + "\n"


def _seed_lines(comparison: Comparison, *, header: bool) -> list[str]:
    """Per seed, then the plain reference; under a ``- name:`` header when several metrics."""
    lines = []
    for s in comparison.seeds:
        eps = "" if s.epsilon is None else f", epsilon {s.epsilon:.3f}"
        secs = "" if s.train_seconds is None else f", {s.train_seconds / 60:.1f} min training"
        lines.append(f"- seed {s.seed}: {s.value:.2f} at epoch {s.epoch}{eps}{secs}")
    if comparison.reference:
        ref = comparison.reference
        half = "" if ref["half_width"] is None else f" ± {ref['half_width']:.2f}"
        ratio = "" if ref["time_ratio"] is None else f"; time robustlr/plain {ref['time_ratio']:.2f}"
        lines.append(f"- plain torch/Opacus reference: {ref['mean']:.2f}{half} "
                     f"over {len(ref['seeds'])} seed(s){ratio}")
    return [f"- {comparison.name}:", *("  " + line for line in lines)] if header else lines


def write(run_dir: Path, comparison: Comparison, entry: dict[str, Any]) -> None:
    """reproduction.json and reproduction.md in the run folder; the section appended to its
    report.md and report.html when they exist."""
    (run_dir / "reproduction.json").write_text(json.dumps(comparison.record(), indent=2) + "\n")
    text = markdown(comparison, entry)
    (run_dir / "reproduction.md").write_text(text)
    report_md = run_dir / "report.md"
    if report_md.is_file():
        report_md.write_text(report_md.read_text().rstrip("\n") + "\n\n" + text)
    report_html = run_dir / "report.html"
    if report_html.is_file():
        page = report_html.read_text()
        section = (f'<section id="reproduction"><h2>Reproduction: {html.escape(comparison.name)}</h2>'
                   f"<pre>{html.escape(text)}</pre></section>")
        cut = page.rfind("</body>")
        report_html.write_text(page[:cut] + section + page[cut:] if cut >= 0 else page + section)
