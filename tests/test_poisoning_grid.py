"""Poisoning and filtering as grid dimensions: summary and epoch fields, ground-truth
scoring, and that the 'none' scenario is plain training."""

from __future__ import annotations

import csv
import json
import re

import pytest
from helpers import tiny

from robustlr import config as config_module
from robustlr.runs.folder import execute

IMAGES = {"synthetic": {"num_examples": 400, "num_classes": 3, "shape": [1, 8, 8]}}


def run(tmp_path, name, **overrides):
    config = config_module.from_mapping(tiny(data=IMAGES, **overrides))
    run_dir = execute(config, out=tmp_path / name, show_progress=False)
    with (run_dir / "epochs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return json.loads((run_dir / "summary.json").read_text()), rows


def test_a_backdoor_with_and_without_a_filter_reports_its_fields(tmp_path):
    summary, rows = run(tmp_path, "grid", schedules=["constant"],
                        poisoning=["badnets(rate=0.1, target=0, size=2)"],
                        filter=["none", "spectral"], filtering={"epochs": 2})
    unfiltered, filtered = summary
    for record in summary:
        assert record["status"] == "ok", record.get("error")
        assert record["poison"] == "badnets(rate=0.1, target=0, size=2)"
        assert 0.09 <= record["poison_rate"] <= 0.11
        assert 0.0 <= record["asr"] <= 1.0 and record["asr_best"] >= record["asr"] - 1e-9
        assert 0.0 <= record["ra"] <= 1.0
    assert "filter_recall" not in unfiltered
    assert filtered["filter"] == "spectral"
    for key in ("filter_precision", "filter_recall", "filter_f1", "clean_removed"):
        assert 0.0 <= filtered[key] <= 1.0
    # the filter removes at most its budget: 1.5 x the expected poison count
    assert filtered["removed_count"] <= round(1.5 * filtered["poisoned_count"]) + 1
    assert all(row["asr"] != "" for row in rows)


def test_the_none_scenario_is_plain_training(tmp_path):
    plain, plain_rows = run(tmp_path, "plain", schedules=["constant"])
    explicit, explicit_rows = run(tmp_path, "explicit", schedules=["constant"],
                                  poisoning=["none"], filter=["none"])
    timing = ("train_seconds", "wall_seconds", "samples_per_second", "epoch_seconds", "eval_seconds")

    def strip(records):
        return [{k: v for k, v in r.items() if k not in timing} for r in records]

    assert strip(plain) == strip(explicit) and strip(plain_rows) == strip(explicit_rows)


@pytest.mark.parametrize("field, value, message", [
    ("poisoning", "badnets(rate=1.5)", "poisoning[0]: poison 'badnets': rate must be a number in (0, 1)"),
    ("poisoning", "badnest(rate=0.1)", "poisoning[0]: poison 'badnest' is unknown"),
    ("filter", "spectal", "filter[0]: filter 'spectal' is unknown"),
])
def test_bad_poison_and_filter_specs_are_config_errors(field, value, message):
    with pytest.raises(config_module.ConfigError, match=re.escape(message)):
        config_module.from_mapping(tiny(**{field: [value]}))
