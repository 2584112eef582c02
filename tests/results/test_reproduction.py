"""``robustlr reproduce``: the published figure beside the run's mean and 95% interval over
seeds, with a verdict; end to end on the real Tramer & Boneh config (its user model factory,
its dp settings) over a fake full-MNIST wheel, quick-sized."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from robustlr.cli import main
from robustlr.data import fetch as fetching
from robustlr.results import reproduction
from tests.fixtures.mnist_wheel import fake_wheel

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


def _fake_mnist(tmp_path, monkeypatch, n_test: int):
    _, sha1 = fake_wheel(tmp_path / "fake.whl", n_train=300, n_test=n_test, chunk=64)
    fetching.fetch_mnist(str(tmp_path / "data"), wheel=str(tmp_path / "fake.whl"), expected=sha1)
    monkeypatch.chdir(tmp_path)  # the configs read data.root "data"
    monkeypatch.setenv("PYTHONPATH", "")


def test_also_metrics_must_name_their_figure(tmp_path):
    (tmp_path / "published.yaml").write_text(
        "x: {config: c.yaml, metric: robust_acc, published: 88, tolerance: 2, source: s, citation: c,\n"
        "    protocol: p, also: [{metric: test_acc, published: 98.5, source: s}]}\n")
    with pytest.raises(reproduction.InputError, match=r"'x' also\[0\] lacks tolerance"):
        reproduction.load_published(tmp_path / "published.yaml")


def test_wong_entry_states_both_tolerances_of_the_issue():
    entry = reproduction.load_published(REPRODUCTIONS / "published.yaml")["wong_fgsm_rs_mnist"]
    assert (entry["metric"], entry["tolerance"]) == ("robust_acc", 2.0)
    assert [(a["metric"], a["tolerance"]) for a in entry["also"]] == [("test_acc", 1.0)]
    assert "fast_adversarial" in entry["source"] and (REPRODUCTIONS / entry["config"]).is_file()


def test_wong_quick_compares_robust_and_clean_beside_the_plain_reference(tmp_path, monkeypatch):
    """The real Wong et al. config and user model, quick-sized, and the plain reference script on
    the same fake MNIST: robust accuracy (the final cascade, read from each trial's summary) and
    clean accuracy, each beside the plain script's, with the time ratio."""
    _fake_mnist(tmp_path, monkeypatch, n_test=20)  # the PGD-50-10 evaluation is the cost
    script = REPRODUCTIONS.parents[1] / "benchmarks" / "reference_wong_fgsm.py"
    subprocess.run([sys.executable, str(script), "--root", "data", "--seeds", "0", "--epochs", "1",
                    "--subset", "10", "--out", "ref.json"], check=True, capture_output=True, timeout=300)
    result = CliRunner().invoke(main, ["reproduce", "wong_fgsm_rs_mnist", "--dir", str(REPRODUCTIONS),
                                       "--quick", "--out", "run", "--workers", "1", "--no-progress",
                                       "--reference", "ref.json"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "reproduction.json").read_text())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    robust = {r["seed"]: 100.0 * r["robust_acc"] for r in summary}
    assert robust and all(r["robust_examples"] == 20 for r in summary)  # quick: all 20 fake test images
    assert {s["seed"]: s["value"] for s in saved["seeds"]} == pytest.approx(robust)
    assert saved["published"] == 88.38 and saved["tolerance"] == 2.0
    (clean,) = saved["also"]
    assert clean["name"] == "wong_fgsm_rs_mnist test_acc" and clean["tolerance"] == 1.0
    assert {s["seed"] for s in clean["seeds"]} == {0, 1, 2}
    plain = json.loads((tmp_path / "ref.json").read_text())["results"]
    assert saved["reference"]["mean"] == pytest.approx(100.0 * plain[0]["robust_acc"])
    assert clean["reference"]["mean"] == pytest.approx(100.0 * plain[0]["test_acc"])
    assert saved["reference"]["time_ratio"] > 0
    assert clean["line"] in result.output and clean["line"] in (tmp_path / "run" / "report.md").read_text()


def test_a_summary_metric_is_read_at_the_last_epoch_only(tmp_path):
    """robust_acc (the final cascade) exists at the end of a trial: read from its summary at
    the last epoch, refused at an earlier one rather than taken from the wrong model."""
    from robustlr.results.store import Store

    store = Store(tmp_path / "results.sqlite")
    store.register(0, "t0", {"seed": 4})
    for epoch in (1, 2):
        store.add_epoch("t0", epoch, {"test_acc": 0.9 + epoch / 100, "epoch_seconds": 5.0})
    store.finish("t0", "ok", {"robust_acc": 0.875, "test_acc": 0.92})
    store.close()
    (result,) = reproduction.run_results(tmp_path, "robust_acc")
    assert (result.seed, result.epoch, result.value, result.train_seconds) == (4, 2, 87.5, 10.0)
    assert reproduction.run_results(tmp_path, "test_acc", epoch=1)[0].value == pytest.approx(91.0)
    with pytest.raises(reproduction.InputError, match="epoch 1 has no 'robust_acc'"):
        reproduction.run_results(tmp_path, "robust_acc", epoch=1)


def test_finished_only_leaves_out_and_names_the_unfinished_trials(tmp_path):
    from robustlr.results.store import Store

    store = Store(tmp_path / "results.sqlite")
    for position, seed in enumerate((0, 1, 2)):
        store.register(position, f"t{seed}", {"seed": seed})
        store.add_epoch(f"t{seed}", 1, {"test_acc": 0.9, "epoch_seconds": 1.0})
    store.finish("t0", "ok", {"robust_acc": 0.8})
    store.finish("t1", "ok", {"robust_acc": 0.9})
    store.start("t2")
    store.close()
    with pytest.raises(reproduction.InputError, match="trial t2 is running"):
        reproduction.run_results(tmp_path, "robust_acc")
    kept = reproduction.run_results(tmp_path, "robust_acc", finished_only=True)
    assert [(r.seed, r.value) for r in kept] == [(0, 80.0), (1, 90.0)]
    assert reproduction.unfinished_seeds(tmp_path) == [2]


def test_madry_entry_is_the_mnist_challenge_recipe(monkeypatch):
    """The GPU reproduction's config builds with its user model, and its recipe is the
    challenge's: 100,000 steps of 50 (83 epochs of 60,000 images), PGD-40 of step 0.01 at eps
    0.3, Adam 1e-4; the headline is 100-step PGD from 50 starts (89.62%)."""
    from robustlr import experiment, models

    entry = reproduction.load_published(REPRODUCTIONS / "published.yaml")["madry_pgd_at_mnist"]
    assert (entry["metric"], entry["published"], entry["tolerance"]) == ("robust_acc", 89.62, 2.0)
    assert "mnist_challenge" in entry["source"] and "89.62%" in entry["source"]
    monkeypatch.syspath_prepend(str(REPRODUCTIONS))
    config = experiment.load(REPRODUCTIONS / entry["config"])
    steps = config.train.epochs * (60_000 // config.train.batch_size)
    assert config.train.batch_size == 50 and abs(steps - 100_000) <= 0.005 * 100_000
    assert (config.train.optimizer, config.train.lr) == ("adam", 1e-4)
    assert config.regimes == ["pgd_at(eps=0.3, steps=40, step_size=0.01)"]
    assert config.evaluation.final == ["pgd(eps=0.3, steps=100, step_size=0.01, restarts=50)"]
    model = models.build(config.model, input_shape=(1, 28, 28), num_classes=10, mean=[0.0], std=[1.0])
    assert sum(p.numel() for p in model.parameters()) == 3_274_634
