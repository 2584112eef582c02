"""Issue 24, the report's first screen: what was audited (model, data, test-set size, headline
evaluation), what each defence costs per schedule against the same schedule under standard
training, the DP panel as a dot plot against the non-private reference, points at 0% / 100%
drawn whole, panel titles that never overprint, a note when plateau never fired, and the
equal-epsilon table saying what the verdict says. Built from generated records."""

from __future__ import annotations

import math

import pytest
from fake_run import DEFAULT_SCHEDULES, THREATS, fake_run
from matplotlib.backends.backend_agg import FigureCanvasAgg

from robustlr.config import ReportConfig
from robustlr.results.report import compose
from robustlr.results.report import setup as report_setup
from robustlr.results.report.defence_cost import FIRST_SCREEN_ROWS, cell_text
from robustlr.results.report.schedule_notes import never_fired
from robustlr.results.stats import interval

FIVE = DEFAULT_SCHEDULES[:5]


def blocks(document, kind):
    return [value for k, value in document.blocks if k == kind]


def plot(document, name):
    return next(p for p in blocks(document, "plot") if p.name == name)


def table(document, name):
    return next(t for t in blocks(document, "table") if t.name == name)


@pytest.fixture(scope="module")
def default_like():
    summaries, rows = fake_run(FIVE, effect={"onecycle": 0.03})
    return summaries, compose("t", summaries, rows, ReportConfig())


def test_the_test_set_size_is_the_common_denominator_of_the_accuracies():
    records = [{"clean_acc": k / 359} for k in (302, 305, 298, 301)]
    assert report_setup.test_size(records) == 359
    assert report_setup.test_size([{"clean_acc": 0.123456789123}, {"clean_acc": 0.987654321}]) is None
    assert report_setup.test_size([{"clean_acc": None}]) is None


def test_the_status_line_names_model_data_test_set_and_headline_evaluation():
    records = [{"trial": f"t{k}", "schedule": "constant", "regime": "standard", "lr_scale": 1.0,
                "seed": k, "status": "ok", "model": "cnn", "clean_acc": k / 359,
                "per_class_acc": [0.9] * 10,
                "robust_eval": "cascade pgd(eps=0.1, steps=10)", "robust_examples": 359}
               for k in (302, 305, 298)]
    assert report_setup.setup_text(records, "digits") == (
        "Model cnn; data digits; 359 test examples in 10 classes; robust accuracy: cascade "
        "pgd(eps=0.1, steps=10) on 359 test examples.")
    document = compose("t", records, [], ReportConfig(), data="digits")
    assert blocks(document, "text")[0].endswith(report_setup.setup_text(records, "digits"))


def test_the_defence_cost_table_follows_the_verdict_and_precedes_the_frontiers(default_like):
    _, document = default_like
    kinds = [(k, getattr(v, "name", "")) for k, v in document.blocks]
    bullets = kinds.index(("bullets", ""))
    assert kinds.index(("table", "defence_cost")) == bullets + 2  # after its one-line lead-in
    assert kinds.index(("plot", "verdict_frontiers")) == bullets + 3
    cost = table(document, "defence_cost")
    assert [label for label, _ in cost.groups] == [
        "", "reference: standard training", "pgd_at(eps=0.1, steps=5)", "DP ε = 3",
        "badnets(rate=0.05, target=0) / none", "badnets(rate=0.05, target=0) / activation_clustering"]
    assert cost.header == ["schedule", "clean %", "robust %", "Δ clean", "Δ robust", "Δ clean",
                           "Δ robust", "ε spent", "Δ clean", "ASR %", "Δ clean", "ASR %"]
    assert [row[0] for row in cost.rows] == ["constant", "step", "cosine", "onecycle", "linear"]


def _mean(summaries, schedule, key, **where):
    return interval([r[key] for r in summaries if r["schedule"] == schedule
                     and all(r[k] == v for k, v in where.items())]).mean


def test_each_cost_is_the_change_against_the_same_schedule_under_standard_training(default_like):
    summaries, document = default_like
    row = next(r for r in table(document, "defence_cost").rows if r[0] == "cosine")
    spec = "cosine(warmup=0.05)"
    standard = _mean(summaries, spec, "clean_acc", regime="standard", poison="none")
    dp = _mean(summaries, spec, "clean_acc", regime=THREATS[2][0])
    adversarial_robust = _mean(summaries, spec, "robust_acc", regime=THREATS[1][0])
    standard_robust = _mean(summaries, spec, "robust_acc", regime="standard", poison="none")
    assert row[1] == f"{100 * standard:.1f}"
    assert row[4] == f"{100 * (adversarial_robust - standard_robust):+.1f}".replace("-", "−")
    assert row[5] == f"{100 * (dp - standard):+.1f}".replace("-", "−")
    assert row[5].startswith("−9.") or row[5].startswith("−10.")  # fake_run: DP costs 10 points
    assert row[7] == f"{_mean(summaries, spec, 'epsilon', regime=THREATS[2][0]):.2f}"
    asr = _mean(summaries, spec, "asr", poison=THREATS[3][1], filter="none")
    assert row[9] == f"{100 * asr:.1f}"


def test_no_cost_table_without_a_standard_reference():
    summaries, rows = fake_run(FIVE, THREATS[1:3])
    document = compose("t", summaries, rows, ReportConfig())
    assert not [t for t in blocks(document, "table") if t.name == "defence_cost"]


def test_the_dp_panel_is_a_dot_plot_against_the_non_private_reference(default_like):
    summaries, document = default_like
    figure = plot(document, "verdict_frontiers").figure
    dp = next(a for a in figure.axes if a.get_title().startswith("DP ε = 3"))
    assert "against no DP" in dp.get_title()
    assert "epsilon" not in dp.get_xlabel()
    labels = [t.get_text() for t in dp.get_yticklabels()]
    assert sorted(labels) == sorted(["constant", "step", "cosine", "onecycle", "linear"])
    hollow = [line.get_xdata()[0] for line in dp.get_lines() if line.get_markerfacecolor() == "white"]
    references = [100 * _mean(summaries, spec, "clean_acc", regime="standard", poison="none")
                  for spec in FIVE]
    assert sorted(hollow) == pytest.approx(sorted(references))


def test_points_at_the_edge_of_the_range_are_not_clipped():
    summaries, rows = fake_run(FIVE, [THREATS[0], THREATS[3]])
    for record in summaries:
        if record["poison"] != "none":
            record["asr"] = 1.0  # every backdoor fully learned: the points sit at 100%
    document = compose("t", summaries, rows, ReportConfig())
    for axes in plot(document, "verdict_frontiers").figure.axes:
        marked = [line for line in axes.get_lines() if line.get_marker() not in ("None", "", None)]
        assert marked and not any(line.get_clip_on() for line in marked)


def test_panel_titles_never_overprint_with_twelve_schedules():
    summaries, rows = fake_run(DEFAULT_SCHEDULES, seeds=2)
    figure = plot(compose("t", summaries, rows, ReportConfig()), "verdict_frontiers").figure
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    titles = [(axes.title.get_window_extent(renderer), axes.get_window_extent(renderer))
              for axes in figure.axes]
    for index, (box, frame) in enumerate(titles):
        assert box.width <= frame.width * 1.1, figure.axes[index].get_title()
        for other, _ in titles[index + 1:]:
            assert not box.overlaps(other)


def _plateau_rows(trials, lrs):
    return [{"trial": t, "epoch": e, "lr": lr} for t in trials for e, lr in enumerate(lrs, 1)]


def test_a_plateau_that_never_fired_is_noted_and_one_that_fired_is_not():
    spec = "plateau(patience=2, factor=0.2)"
    records = [{"trial": f"p{i}", "schedule": spec, "status": "ok"} for i in range(3)]
    still = _plateau_rows(["p0", "p1", "p2"], [0.1, 0.1, 0.1])
    (note,) = never_fired(records, still)
    assert note.startswith(f"Note: {spec} never reduced its LR (3 trials, 3 epochs, patience 2)")
    fired = still[:-1] + [{"trial": "p2", "epoch": 3, "lr": 0.02}]
    assert never_fired(records, fired) == []
    warmup = _plateau_rows(["p0", "p1", "p2"], [0.05, 0.1, 0.1])  # a warmup is not a reduction
    assert len(never_fired(records, warmup)) == 1
    constant = [{**r, "schedule": "constant"} for r in records]
    assert never_fired(constant, still) == []


def test_the_plateau_note_sits_under_the_verdict():
    summaries, rows = fake_run(["constant", "plateau(patience=2, factor=0.2)"], THREATS[:1])
    rows = [{**row, "lr": 0.1} for row in rows]
    document = compose("t", summaries, rows, ReportConfig())
    kinds = [k for k, _ in document.blocks]
    after = document.blocks[kinds.index("bullets") + 1]
    assert after[0] == "text" and after[1].startswith("Note: plateau(patience=2, factor=0.2) never")


def _dp_records():
    """Two DP schedules: seeds move both a lot (wide, overlapping intervals) while cosine
    stays about 2 points behind constant in every seed (a clear paired difference)."""
    records = []
    for seed, (shift, wobble) in enumerate([(-0.06, 0.001), (0.0, -0.0015), (0.06, 0.0005)]):
        for schedule, acc in (("constant", 0.80 + shift), ("cosine", 0.78 + shift + wobble)):
            records.append({"trial": f"{schedule}{seed}", "schedule": schedule,
                            "regime": "dp(target_epsilon=3.0, delta=1e-05)", "lr_scale": 1.0,
                            "seed": seed, "poison": "none", "filter": "none", "status": "ok",
                            "clean_acc": acc, "epsilon": 2.95, "target_epsilon": 3.0,
                            "delta": 1e-5})
    return records


def test_the_equal_epsilon_table_says_what_the_verdict_says():
    records = _dp_records()
    cosine = [r["clean_acc"] for r in records if r["schedule"] == "cosine"]
    constant = [r["clean_acc"] for r in records if r["schedule"] == "constant"]
    assert interval(cosine).high >= interval(constant).low  # the old rule: "overlaps best"
    document = compose("t", records, [], ReportConfig())
    (judged,) = document.verdicts
    ranked = table(document, "equal_epsilon").rows
    assert [row[2] for row in ranked] == [e.schedule for e in judged.entries]
    assert ranked[0][9] == "leader"
    behind = judged.entries[1]
    word = "tied with the leader" if judged.tied(behind) else "behind the leader"
    assert ranked[1][9].startswith(word)
    (sentence,) = blocks(document, "bullets")[0]
    assert ("tied with it" in sentence) == judged.tied(behind)


def test_unchosen_lr_scales_follow_the_verdict_rows_marked():
    records = _dp_records()
    records += [{**r, "trial": r["trial"] + "h", "lr_scale": 0.5, "clean_acc": r["clean_acc"] - 0.1,
                 "val_acc": 0.1} for r in records]
    for r in records:
        r.setdefault("val_acc", 0.9)
    document = compose("t", records, [], ReportConfig(select_lr="validation"))
    ranked = table(document, "equal_epsilon").rows
    assert [row[1] for row in ranked] == ["1", "2", "-", "-"]
    assert all(row[4] == "1" for row in ranked[:2]) and all(row[4] == "0.5" for row in ranked[2:])
    assert all(row[9] == "LR scale not chosen (validation)" for row in ranked[2:])


def test_costs_are_not_a_number_where_nothing_was_measured():
    summaries, rows = fake_run(FIVE[:2], THREATS[:2])
    for record in summaries:
        record.pop("robust_acc")
    cost = table(compose("t", summaries, rows, ReportConfig()), "defence_cost")
    assert cost.header == ["schedule", "clean %", "Δ clean"]
    assert all(not math.isnan(float(row[1])) for row in cost.rows)


def test_a_long_cost_table_follows_the_frontiers_so_they_stay_on_the_first_screen():
    summaries, rows = fake_run(DEFAULT_SCHEDULES[:FIRST_SCREEN_ROWS + 1], THREATS[:2], seeds=2)
    document = compose("t", summaries, rows, ReportConfig())
    kinds = [(k, getattr(v, "name", "")) for k, v in document.blocks]
    assert kinds.index(("table", "defence_cost")) > kinds.index(("plot", "verdict_frontiers"))
    assert len(table(document, "defence_cost").rows) == FIRST_SCREEN_ROWS + 1


def test_a_change_that_rounds_to_zero_has_no_sign():
    assert [cell_text(v, "clean") for v in (-0.0004, 0.0004, -0.0123, 0.5)] == [
        "0.0", "0.0", "−1.2", "+50.0"]
