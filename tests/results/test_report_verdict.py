"""The report opens with a verdict per threat model: its own frontier and ranking, sentences
backed by paired, Holm-corrected tests, the LR chosen on validation, and figures a reader can
trust (one colour per schedule, short legends, no empty panel, axes inside the metric's range).
Built from generated records: nothing is trained."""

from __future__ import annotations

import math

import pytest
from fake_run import DEFAULT_SCHEDULES, THREATS, fake_run
from matplotlib.colors import to_hex
from scipy import stats as scipy_stats

from robustlr.config import ReportConfig
from robustlr.results.report import compose
from robustlr.results.report.plotting import MAX_LEGEND
from robustlr.results.stats import holm, paired

FIVE = DEFAULT_SCHEDULES[:5]


def blocks(document, kind):
    return [value for k, value in document.blocks if k == kind]


def plots(document) -> dict:
    return {plot.name: plot for plot in blocks(document, "plot")}


@pytest.fixture(scope="module")
def default_like():
    summaries, rows = fake_run(FIVE, effect={"onecycle": 0.03})
    return compose("t", summaries, rows, ReportConfig())


def test_the_report_opens_with_one_verdict_sentence_per_threat_model(default_like):
    """Issue 12: the report opened with one clean-accuracy ranking across all threat models
    (DP trials next to PGD-AT ones); the frontier came 3,000 px down."""
    assert blocks(default_like, "heading")[0] == "Verdict per threat model"
    (sentences,) = blocks(default_like, "bullets")
    assert [s.split(",")[0] for s in sentences] == [
        "Under standard", "Under pgd_at(eps=0.1", "Under DP ε = 3",
        "Under badnets(rate=0.05", "Under badnets(rate=0.05"]
    assert "filter none" in sentences[3] and "activation_clustering" in sentences[4]
    first_plot = next(v for k, v in default_like.blocks if k == "plot")
    assert first_plot.name == "verdict_frontiers" and len(first_plot.figure.axes) == 5


def test_a_sentence_names_the_leader_the_ties_and_the_gap_with_its_interval(default_like):
    (sentences,) = blocks(default_like, "bullets")
    standard = sentences[0]
    assert "(paired over 3 seeds, Holm-corrected): onecycle leads (" in standard
    assert " points less accurate" in standard and " ± " in standard
    pgd = sentences[1]
    assert "by robust accuracy" in pgd and "onecycle leads" in pgd
    assert "attack success" in sentences[3]  # poisoning is judged by ASR


def test_one_seed_never_claims_a_difference():
    summaries, rows = fake_run(FIVE, THREATS[:1], seeds=1, effect={"onecycle": 0.03})
    (sentences,) = blocks(compose("t", summaries, rows), "bullets")
    assert "1 seed: no noise estimate" in sentences[0] and "less accurate" not in sentences[0]


def test_each_threat_model_is_ranked_on_its_own(default_like):
    (table,) = [t for t in blocks(default_like, "table") if t.header[0] == "threat model"]
    by_threat: dict[str, list[str]] = {}
    for row in table.rows:
        by_threat.setdefault(row[0], []).append(row[1])
    assert len(by_threat) == 5
    assert all(ranks == ["1", "2", "3", "4", "5"] for ranks in by_threat.values())


def test_accuracy_per_epoch_shows_dp_run_at_its_own_lr_scale():
    """Issue 12: the DP panel was empty: it plotted only lr_scale 1.0 and DP ran at 0.5."""
    summaries, rows = fake_run(FIVE[:2], THREATS[:3], seeds=1, lr_scales=(0.5,))
    figure = plots(compose("t", summaries, rows))["accuracy_per_epoch"].figure
    assert [axes.get_title() for axes in figure.axes] == [
        "standard", "pgd_at(eps=0.1, steps=5)", "DP ε = 3"]
    assert all(len(axes.get_lines()) == 2 for axes in figure.axes)


def test_a_threat_model_without_data_gets_no_panel_and_the_reason_is_said():
    summaries, rows = fake_run(FIVE[:2], THREATS[:2], seeds=1)
    rows = [r for r in rows if r["trial"] not in {s["trial"] for s in summaries
                                                  if s["regime"] != "standard"}]
    document = compose("t", summaries, rows)
    figure = plots(document)["accuracy_per_epoch"].figure
    assert [axes.get_title() for axes in figure.axes] == ["standard"]
    assert any("No panel for pgd_at(eps=0.1, steps=5): no test_acc per epoch" in text
               for text in blocks(document, "text"))


def _legend_entries(axes) -> int:
    legend = axes.get_legend()
    return len(legend.get_texts()) if legend is not None else 0


@pytest.fixture(scope="module")
def sixty_groups():
    schedules = DEFAULT_SCHEDULES + ["cosine(warmup=0.1)", "cosine(warmup=0.2)",
                                     "cosine(warmup=0.3)"]
    summaries, rows = fake_run(schedules, THREATS[:4], seeds=2)
    return compose("sixty", summaries, rows)


def test_sixty_groups_no_legend_over_12_entries_and_no_empty_panel(sixty_groups):
    """Issue 12: 27 groups gave legends of 27 entries over 10 repeating colours."""
    figures = plots(sixty_groups)
    assert {"verdict_frontiers", "accuracy_per_epoch", "lr_curves"} <= set(figures)
    for name, plot in figures.items():
        for axes in plot.figure.axes:
            assert axes.has_data(), f"{name}: empty panel {axes.get_title()!r}"
            assert _legend_entries(axes) <= MAX_LEGEND, name


def test_one_colour_per_schedule_across_figures(sixty_groups):
    figures = plots(sixty_groups)
    colours = [to_hex(line.get_color()) for line in figures["lr_curves"].figure.axes[0].get_lines()]
    assert len(set(colours)) == len(colours) == 15  # distinct, not 10 repeating
    epoch_axes = figures["accuracy_per_epoch"].figure.axes[0]
    assert [to_hex(line.get_color()) for line in epoch_axes.get_lines()] == colours


def test_axes_never_leave_the_metric_range_with_two_seeds(sixty_groups):
    """Issue 12: 2-seed error bars stretched axes to 110% accuracy and negative seconds."""
    figures = plots(sixty_groups)
    for axes in figures["verdict_frontiers"].figure.axes:
        for label, (low, high) in ((axes.get_xlabel(), axes.get_xlim()),
                                   (axes.get_ylabel(), axes.get_ylim())):
            assert low >= 0, label
            if "%" in label:
                assert high <= 100, label
    assert figures["cost"].figure.axes[0].get_xlim()[0] >= 0


def test_select_lr_reports_each_schedule_at_its_best_validation_scale():
    """Issue 12: every schedule ran at one base LR although schedules differ in their best."""
    summaries, rows = fake_run(FIVE[:2], THREATS[:1], seeds=3, lr_scales=(0.5, 1.0))
    for record in summaries:  # validation favours x0.5 for constant, test favours x1
        if record["schedule"] == "constant":
            record["val_acc"] = 0.99 if record["lr_scale"] == 0.5 else 0.5
            record["clean_acc"] = 0.5 if record["lr_scale"] == 0.5 else 0.99
    document = compose("t", summaries, rows, ReportConfig(select_lr="validation"))
    (table,) = [t for t in blocks(document, "table") if t.header[0] == "threat model"]
    labels = [row[2] for row in table.rows]
    assert "constant (x0.5 chosen)" in labels and len(labels) == 2
    assert "select_lr: validation" in " ".join(blocks(document, "text"))


def test_adversarial_lr_scales_are_chosen_by_robust_validation_accuracy():
    """Issue 24: the report looked for monitor_val_robust_acc in summaries that never had it
    and chose adversarial LR scales by clean validation accuracy without saying so. Here clean
    validation favours x0.5 and robust validation favours x1: adversarial training takes x1,
    standard training x0.5, and the report names both numbers."""
    summaries, rows = fake_run(FIVE[:2], THREATS[:2], seeds=3, lr_scales=(0.5, 1.0))
    for record in summaries:
        half = record["lr_scale"] == 0.5
        record["val_acc"] = 0.99 if half else 0.5
        if record["regime"].startswith("pgd_at"):
            record["monitor_val_robust_acc"] = 0.3 if half else 0.6
    document = compose("t", summaries, rows, ReportConfig(select_lr="validation"))
    (table,) = [t for t in blocks(document, "table") if t.header[0] == "threat model"]
    chosen = {(row[0], row[2]) for row in table.rows}
    assert {("standard", "constant (x0.5 chosen)"),
            ("pgd_at(eps=0.1, steps=5)", "constant (x1 chosen)")} <= chosen
    text = " ".join(blocks(document, "text"))
    assert "robust validation accuracy (monitor_val_robust_acc" in text
    assert "under pgd_at(eps=0.1, steps=5) the best robust" in text
    for record in summaries:  # a run that did not record it falls back, and says so
        record.pop("monitor_val_robust_acc", None)
    document = compose("t", summaries, rows, ReportConfig(select_lr="validation"))
    text = " ".join(blocks(document, "text"))
    assert "clean validation accuracy, as its trials recorded no monitor_val_robust_acc" in text


def test_paired_difference_matches_scipy_and_holm_steps_down():
    a, b = {0: 0.80, 1: 0.82, 2: 0.79, 3: 0.85}, {0: 0.70, 1: 0.75, 2: 0.71, 3: 0.74, 9: 0.1}
    result = paired(a, b)
    reference = scipy_stats.ttest_rel([a[s] for s in range(4)], [b[s] for s in range(4)])
    assert result.n == 4 and result.p == pytest.approx(reference.pvalue)
    assert result.mean == pytest.approx(0.09)
    assert paired({0: 1.0}, {0: 0.5}).n == 1 and math.isnan(paired({0: 1.0}, {0: 0.5}).p)
    assert holm([0.01, 0.04, 0.03, math.nan])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(holm([math.nan])[0])
    # the same difference on every seed has no noise estimate: never called "behind"
    assert math.isnan(paired({0: 0.9, 1: 0.8}, {0: 0.8, 1: 0.7}).p)


def test_the_ranking_under_constraints_follows_the_verdict_not_the_appendix():
    """Issue 12: the ranking added by `report --rank-by` was the last section."""
    summaries, rows = fake_run(FIVE[:2], THREATS[:2], seeds=2)
    document = compose("t", summaries, rows, ReportConfig(rank_by="robust_acc", min={"clean_acc": 50}))
    headings = blocks(document, "heading")
    assert headings.index("Ranking under constraints") == 1  # right after the verdict
    assert headings.index("Ranking under constraints") < headings.index("Learning-rate schedules")


@pytest.mark.parametrize("specs, mentioned", [
    (["constant", "cosine"], False),
    (["constant", "plateau(patience=2, factor=0.2)"], True),
])
def test_the_lr_figure_mentions_reductions_only_beside_a_metric_driven_schedule(specs, mentioned):
    """The curves of a metric-driven schedule lack its reductions, and the caption says so; a
    report without one (every reproduction) must not talk of a plateau it does not have."""
    from robustlr.results.report.document import Document
    from robustlr.results.report.sections import _lr_curves

    document = Document("t")
    _lr_curves(document, [{"schedule": spec} for spec in specs])
    (plot,) = [value for kind, value in document.blocks if kind == "plot"]
    assert ("without their reductions" in plot.caption) is mentioned
