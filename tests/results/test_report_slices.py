"""Issue 24, the slice view: per threat model and schedule, the worst class's clean and robust
accuracy beside the mean over classes, from the per-class arrays each trial records."""

from __future__ import annotations

import math

import pytest
from fake_run import THREATS, fake_run

from robustlr.config import ReportConfig
from robustlr.results.report import compose
from robustlr.results.report.slices import summarise, worst_class


def test_worst_class_skips_missing_classes_and_names_the_worst():
    spread = worst_class([0.9, 0.5, None, float("nan"), 0.7])
    assert (spread.mean, spread.worst, spread.worst_class) == (pytest.approx(0.7), 0.5, 1)
    assert spread.gap == pytest.approx(0.2)
    assert worst_class([0.4, 0.4]).worst_class == 0  # ties: the lowest index
    assert worst_class([]) is None and worst_class(None) is None and worst_class([None]) is None


def test_seed_means_average_each_trials_own_worst_class():
    runs = [{"per_class_acc": [0.9, 0.5, 0.7]}, {"per_class_acc": [0.3, 0.9, 0.9]},
            {"per_class_acc": [0.8, 0.6, 0.7]}]
    summary = summarise(runs, "clean")
    # per trial worst: 0.5, 0.3, 0.6 (not the worst of the seed-mean classes, 0.6667)
    assert summary.worst == pytest.approx((0.5 + 0.3 + 0.6) / 3)
    assert summary.mean == pytest.approx((0.7 + 0.7 + 0.7) / 3)
    assert summary.worst_class == 1 and summary.seeds == 3
    assert math.isnan(summarise(runs, "robust").worst)


def _with_classes(summaries):
    for record in summaries:
        weak = 0.2 if record["regime"].startswith("pgd_at") else 0.05  # AT widens the gap
        record["per_class_acc"] = [record["clean_acc"]] * 9 + [record["clean_acc"] - weak]
        record["robust_per_class_acc"] = [record["robust_acc"]] * 3 + [record["robust_acc"] - 0.3] \
            + [record["robust_acc"]] * 6
    return summaries


def test_the_worst_class_table_and_figure_per_threat_model():
    summaries, rows = fake_run(["constant", "onecycle"], THREATS[:2])
    document = compose("t", _with_classes(summaries), rows, ReportConfig())
    (table,) = [v for k, v in document.blocks if k == "table" and v.name == "worst_class"]
    assert table.header == ["threat model", "schedule", "clean: class mean %",
                            "clean: worst class %", "clean: gap", "robust: class mean %",
                            "robust: worst class %", "robust: gap"]
    by_key = {(row[0], row[1]): row for row in table.rows}
    assert set(by_key) == {("standard", "constant"), ("standard", "onecycle"),
                           ("pgd_at(eps=0.1, steps=5)", "constant"),
                           ("pgd_at(eps=0.1, steps=5)", "onecycle")}
    assert by_key[("standard", "constant")][4] == "4.5"  # 5 points below, 0.5 in the mean
    assert by_key[("pgd_at(eps=0.1, steps=5)", "onecycle")][4] == "18.0"
    assert by_key[("standard", "onecycle")][3].endswith("(class 9)")
    assert by_key[("standard", "onecycle")][6].endswith("(class 3)")
    assert by_key[("standard", "onecycle")][7] == "27.0"
    (figure,) = [v for k, v in document.blocks if k == "plot" and v.name == "worst_class"]
    assert [a.get_title() for a in figure.figure.axes] == ["standard", "pgd_at(eps=0.1, steps=5)"]


def test_no_worst_class_section_without_per_class_records():
    summaries, rows = fake_run(["constant"], THREATS[:1])
    document = compose("t", summaries, rows, ReportConfig())
    assert "Worst class" not in [v for k, v in document.blocks if k == "heading"]
