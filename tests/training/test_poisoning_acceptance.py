"""Poisoning experiments end to end: the report section for a tiny poisoned run (fast), and
the acceptance numbers on digits (slow): BadNets learned without a filter and removed with
one, and a label flip caught by the k-NN filter."""

from __future__ import annotations

import csv
import json

import pytest
from helpers import tiny

from robustlr import experiment
from robustlr.results import report
from robustlr.results.report.poisoning import poisoning_section
from robustlr.runs.folder import run_in_folder

IMAGES = {"synthetic": {"num_examples": 400, "num_classes": 3, "shape": [1, 8, 8]}}


def run(tmp_path, name, config):
    run_dir = run_in_folder(experiment.from_mapping(config), out=tmp_path / name, show_progress=False)
    with (run_dir / "epochs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return run_dir, json.loads((run_dir / "summary.json").read_text()), rows


def test_the_poisoning_section_is_registered():
    assert poisoning_section in report.SECTIONS


def test_a_tiny_poisoned_run_reports_asr_per_epoch_and_the_filter_table(tmp_path, monkeypatch):
    if poisoning_section not in report.SECTIONS:  # registration is tested on its own above
        monkeypatch.setattr(report, "SECTIONS", [*report.SECTIONS, poisoning_section])
    config = tiny(data=IMAGES, schedules=["constant"], train={"epochs": 2},
                  poisoning=["badnets(rate=0.1, target=0, size=2)"],
                  filter=["none", "spectral"], filtering={"epochs": 2})
    run_dir, summary, rows = run(tmp_path, "tiny", config)
    assert [r["status"] for r in summary] == ["ok", "ok"]
    assert sorted((r["trial"], int(r["epoch"])) for r in rows) == sorted(
        (r["trial"], epoch) for r in summary for epoch in (1, 2))
    assert all(0.0 <= float(row["asr"]) <= 1.0 for row in rows)
    markdown = (run_dir / "report.md").read_text()
    assert "## Poisoning" in markdown and "## Poison filters" in markdown
    assert "| poison | filter | trials | precision | recall | F1 |" in markdown
    assert "| badnets(rate=0.1, target=0, size=2) | spectral | 1 |" in markdown
    assert "## Poisoning outcome per schedule" in markdown
    assert (run_dir / "figures" / "asr_per_epoch.png").is_file()
    assert (run_dir / "figures" / "verdict_frontiers.png").is_file()  # clean acc vs ASR


def test_the_section_skips_runs_without_poison():
    document = report.Document("clean")
    poisoning_section(document, [{"trial": "a", "schedule": "constant", "regime": "standard",
                                  "lr_scale": 1.0, "poison": "none", "filter": "none",
                                  "clean_acc": 0.9}], [])
    assert document.blocks == []


# Acceptance on digits (issue 5): the robustlr ``cnn`` with cosine(warmup=0.05) for 15 epochs,
# filters reading an 8-epoch brief training, three seeds; about 4 minutes on one CPU core.
DIGITS = {
    "name": "poison-acceptance",
    "data": {"name": "digits", "val_fraction": 0.15, "test_fraction": 0.2},
    "model": "cnn",
    "train": {"epochs": 15, "batch_size": 64, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
    "schedules": ["cosine(warmup=0.05)"],
    "seeds": [0, 1, 2],
    "filtering": {"epochs": 8},
    "grids": [
        {"poisoning": ["none"]},
        {"poisoning": ["badnets(rate=0.05, target=0, size=3)"],
         "filter": ["none", "spectral", "activation_clustering"]},
        {"poisoning": ["label_flip(rate=0.2, source=1, target=7)"], "filter": ["knn"]},
    ],
}


@pytest.fixture(scope="module")
def digits_grid(tmp_path_factory):
    _, summary, _ = run(tmp_path_factory.mktemp("acceptance"), "digits", DIGITS)
    assert all(r["status"] == "ok" for r in summary), [r.get("error") for r in summary]
    return summary


def arm(summary, poison, defence):
    records = [r for r in summary if r["poison"].startswith(poison) and r["filter"] == defence]
    assert len(records) == len(DIGITS["seeds"])
    return records


def mean(records, key):
    return sum(r[key] for r in records) / len(records)


@pytest.mark.slow
def test_badnets_is_learned_without_a_filter_at_no_cost_in_clean_accuracy(digits_grid):
    clean, poisoned = arm(digits_grid, "none", "none"), arm(digits_grid, "badnets", "none")
    assert all(r["asr"] >= 0.9 for r in poisoned), [r["asr"] for r in poisoned]
    assert abs(mean(poisoned, "clean_acc") - mean(clean, "clean_acc")) <= 0.02


@pytest.mark.slow
@pytest.mark.parametrize("defence", ["spectral", "activation_clustering"])
def test_a_representation_filter_removes_the_backdoor(digits_grid, defence):
    records = arm(digits_grid, "badnets", defence)
    assert all(r["filter_recall"] >= 0.8 for r in records), [r["filter_recall"] for r in records]
    assert mean(records, "asr") <= 0.2, [r["asr"] for r in records]


@pytest.mark.slow
def test_the_knn_filter_catches_a_two_class_label_flip(digits_grid):
    records = arm(digits_grid, "label_flip", "knn")
    assert all(r["filter_recall"] >= 0.7 for r in records), [r["filter_recall"] for r in records]
