"""``robustlr reproduce``: the published figure beside the run's mean and 95% interval over
seeds, with a verdict; end to end on the real Tramer & Boneh config (its user model factory,
its dp settings) over a fake full-MNIST wheel, quick-sized."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_fetch_mnist import fake_wheel

from robustlr.cli import main
from robustlr.data import fetch as fetching
from robustlr.results import reproduction

REPRODUCTIONS = Path(__file__).resolve().parents[2] / "experiments" / "reproductions"


def test_interval_is_the_student_t_95_interval():
    mean, half = reproduction.interval([98.0, 98.2, 98.4])
    assert mean == pytest.approx(98.2)
    assert half == pytest.approx(4.302653 * 0.2 / math.sqrt(3), rel=1e-6)  # t(0.975, 2) = 4.3027
    assert math.isnan(reproduction.interval([97.0])[1])


def test_verdict_uses_the_stated_tolerance():
    assert reproduction.verdict(98.3, 98.1, 0.5) == "reproduced within 0.20 points (tolerance 0.5)"
    assert reproduction.verdict(97.4, 98.1, 0.5) == "differs by -0.70 points (tolerance 0.5)"


def test_reference_log_is_read_at_an_epoch(tmp_path):
    log = tmp_path / "reference.log"
    log.write_text("\n".join(json.dumps({"seed": 0, "epoch": e, "test_acc": 0.9 + e / 100,
                                         "epoch_seconds": 10.0}) for e in (1, 2, 3)) + "\nseed 0 done\n")
    (result,) = reproduction.reference_results(log, epoch=2)
    assert (result.epoch, result.value, result.train_seconds) == (2, pytest.approx(92.0), 20.0)
    with pytest.raises(reproduction.InputError, match="epoch 4"):
        reproduction.reference_results(log, epoch=4)


def test_published_entries_name_their_sources():
    entries = reproduction.load_published(REPRODUCTIONS / "published.yaml")
    entry = entries["tramer_boneh_dp_mnist"]
    assert entry["published"] == 98.1 and "Handcrafted-DP" in entry["source"]
    assert (REPRODUCTIONS / entry["config"]).is_file()


def test_unknown_reproduction_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["reproduce", "nope", "--dir", str(REPRODUCTIONS),
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "tramer_boneh_dp_mnist" in result.output
    assert not (tmp_path / "run").exists()


def test_reproduce_runs_the_recipe_and_writes_the_comparison(tmp_path, monkeypatch):
    """The real config and user model, quick-sized, on a fake MNIST written by the fetch step."""
    _, sha1 = fake_wheel(tmp_path / "fake.whl", n_train=300, n_test=50, chunk=64)
    fetching.fetch_mnist(str(tmp_path / "data"), wheel=str(tmp_path / "fake.whl"), expected=sha1)
    monkeypatch.chdir(tmp_path)  # the config reads data.root "data"
    monkeypatch.setenv("PYTHONPATH", "")
    result = CliRunner().invoke(main, ["reproduce", "tramer_boneh_dp_mnist", "--dir", str(REPRODUCTIONS),
                                       "--quick", "--out", "run", "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "reproduction.json").read_text())
    assert saved["published"] == 98.1 and [s["seed"] for s in saved["seeds"]] == [0, 1, 2]
    assert all(s["epsilon"] <= 3.0 for s in saved["seeds"])
    assert saved["line"].startswith("tramer_boneh_dp_mnist: published 98.10 vs robustlr ")
    assert "differs by" in saved["line"]  # random pixels: nowhere near 98.1
    assert "Reproduction: tramer_boneh_dp_mnist" in (tmp_path / "run" / "report.html").read_text()
    assert saved["line"] in (tmp_path / "run" / "report.md").read_text()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {r["seed"] for r in summary} == {0, 1, 2}
    assert all(r["max_grad_norm"] == 0.1 and r["noise_multiplier"] == 1.23 for r in summary)
