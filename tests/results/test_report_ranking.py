"""The report's LR-scale sensitivity and its ranking under constraints: which groups qualify,
in which order, what the excluded ones break; the config's `report` settings and `robustlr
report --rank-by/--min/--max` drive it; unknown metrics are one-line errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from helpers import tiny

from robustlr import experiment
from robustlr.cli import main
from robustlr.config import ConfigError, ReportConfig
from robustlr.results.report import Document
from robustlr.results.report.constraints import constrained_section
from robustlr.results.report.sensitivity import sensitivity_section
from robustlr.runs.folder import run_in_folder


def record(schedule, seed, *, scale=1.0, regime="dp", **metrics):
    return {"schedule": schedule, "regime": regime, "lr_scale": scale, "seed": seed,
            "poison": "none", "filter": "none", "status": "ok", **metrics}


def tables(document: Document) -> list:
    return [value for kind, value in document.blocks if kind == "table"]


def texts(document: Document) -> str:
    return " ".join(value for kind, value in document.blocks if kind == "text")


SUMMARIES = [  # two seeds per group
    *[record("cosine", s, robust_acc=0.60 + d, epsilon=2.9, asr=0.02) for s, d in ((0, 0), (1, .02))],
    *[record("step", s, robust_acc=0.70 + d, epsilon=3.4, asr=0.01) for s, d in ((0, 0), (1, .02))],
    *[record("linear", s, robust_acc=0.55 + d, epsilon=2.5, asr=0.05) for s, d in ((0, 0), (1, .02))],
    *[record("onecycle", s, robust_acc=0.80, epsilon=2.0, asr=0.30) for s in (0, 1)],
]


def test_ranking_keeps_only_groups_whose_seed_means_meet_every_bound_best_first():
    document = Document("t")
    constrained_section(document, SUMMARIES,
                        ReportConfig(rank_by="robust_acc", max={"epsilon": 3, "asr": 10}))
    ranking, excluded = tables(document)
    assert [row[1].split(" / ")[0] for row in ranking.rows] == ["cosine", "linear"]
    assert [row[0] for row in ranking.rows] == ["1", "2"]
    reasons = {row[0].split(" / ")[0]: row[-1] for row in excluded.rows}
    assert reasons == {"step": "epsilon 3.4 > 3", "onecycle": "asr 30 > 10%"}
    assert ranking.header[3] == "robust_acc %" and ranking.rows[0][3] == "61.0 ± 12.7"
    assert "2 of 4 groups qualify" in texts(document)


def test_a_backdoored_group_never_qualifies_unless_asked():
    """Issue 24: a model with 99.1% attack success ranked 8th among the qualifying groups."""
    backdoored = [*SUMMARIES[:2], *[record("wsd", s, robust_acc=0.9, epsilon=2.0, asr=0.991)
                                    for s in (0, 1)]]
    document = Document("t")
    constrained_section(document, backdoored, ReportConfig(rank_by="robust_acc", max={"epsilon": 3}))
    ranking, excluded = tables(document)
    assert [row[1].split(" / ")[0] for row in ranking.rows] == ["cosine"]
    assert excluded.rows[0][-1] == "backdoored: asr 99.1% > 50% (report.backdoored_asr)"
    assert "never qualifies" in texts(document)
    for asked in (ReportConfig(rank_by="robust_acc", max={"epsilon": 3}, backdoored_asr=None),
                  ReportConfig(rank_by="robust_acc", max={"epsilon": 3, "asr": 100})):
        allowed = Document("t")
        constrained_section(allowed, backdoored, asked)
        assert [row[1].split(" / ")[0] for row in tables(allowed)[0].rows] == ["wsd", "cosine"]


def test_a_lower_is_better_objective_ranks_ascending_and_no_settings_means_no_section():
    document = Document("t")
    constrained_section(document, SUMMARIES, ReportConfig(rank_by="epsilon", min={"robust_acc": 50}))
    assert [row[1].split(" / ")[0] for row in tables(document)[0].rows] == [
        "onecycle", "linear", "cosine", "step"]
    quiet = Document("t")
    constrained_section(quiet, SUMMARIES, ReportConfig())
    assert quiet.blocks == []


def test_sensitivity_reports_each_scale_the_best_and_the_spread():
    summaries = [record("cosine", s, scale=k, regime="standard", clean_acc=acc)
                 for k, acc in ((0.5, 0.90), (1.0, 0.95), (2.0, 0.60)) for s in (0, 1)]
    summaries += [record("step", s, scale=k, regime="standard", clean_acc=acc)
                  for k, acc in ((0.5, 0.93), (1.0, 0.94), (2.0, 0.92)) for s in (0, 1)]
    document = Document("t")
    sensitivity_section(document, summaries, [])
    (table,) = tables(document)
    rows = {row[0]: row for row in table.rows}
    assert rows["cosine"][3] == "x0.5: 90.0, x1: 95.0, x2: 60.0"
    assert (rows["cosine"][4], rows["cosine"][5]) == ("x1", "35.0")
    assert (rows["step"][4], rows["step"][5]) == ("x1", "2.0")
    assert table.rows[0][0] == "step"  # the forgiving schedule first
    assert [value.name for kind, value in document.blocks if kind == "plot"] == ["lr_sensitivity"]


def test_sensitivity_is_quiet_with_one_lr_scale():
    document = Document("t")
    sensitivity_section(document, SUMMARIES, [])
    assert document.blocks == []


def test_unknown_metrics_in_the_config_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"report.max: .*unknown metric 'eps'"):
        experiment.from_mapping(tiny(report={"rank_by": "robust_acc", "max": {"eps": 3}}))


def test_report_bounds_take_percent_like_the_report_and_refuse_fractions():
    """Issue 12: `gate --min clean_acc=96` was read as 96 (a fraction) and failed every group;
    the ranking was in fractions while the report spoke percent."""
    with pytest.raises(ConfigError, match=r"report.min: .*clean_acc is in percent"):
        experiment.from_mapping(tiny(report={"rank_by": "robust_acc",
                                                "min": {"clean_acc": 0.96}}))
    document = Document("t")
    constrained_section(document, [record("a", 0, clean_acc=0.97), record("b", 0, clean_acc=0.95)],
                        ReportConfig(rank_by="clean_acc", min={"clean_acc": 96}))
    ranking, excluded = tables(document)
    assert [row[1].split(" / ")[0] for row in ranking.rows] == ["a"]
    assert ranking.rows[0][3] == "97.0" and "clean_acc >= 96%" in texts(document)


def test_report_ranks_from_the_config_and_the_cli_overrides_it(tmp_path):
    config = tiny(lr_scales=[0.5, 1.0], report={"rank_by": "clean_acc", "max": {"train_seconds": 1e6}})
    run_dir = run_in_folder(experiment.from_mapping(config), out=tmp_path / "run", show_progress=False)
    markdown = (run_dir / "report.md").read_text()
    assert "## Ranking under constraints" in markdown and "train_seconds <= 1e+06" in markdown
    assert "## Sensitivity to the LR scale" in markdown
    result = CliRunner().invoke(main, ["report", str(run_dir), "--rank-by", "train_seconds",
                                       "--max", "clean_acc=200"])
    assert result.exit_code == 0, result.output
    assert "Best train_seconds (lower is better)" in (run_dir / "report.md").read_text()
    bad = CliRunner().invoke(main, ["report", str(run_dir), "--rank-by", "nope"])
    assert bad.exit_code == 2 and "--rank-by: unknown metric 'nope'" in bad.output
    alone = CliRunner().invoke(main, ["report", str(run_dir), "--max", "epsilon=3"])
    assert alone.exit_code == 2 and "--rank-by" in alone.output
