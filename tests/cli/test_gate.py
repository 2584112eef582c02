"""``robustlr gate`` and ``robustlr compare`` on tiny two-seed runs, and the trade-off frontier
section of the report: exit codes are the contract a CI pipeline reads."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import tiny

from robustlr import experiment
from robustlr.cli import main
from robustlr.results.report import build_report
from robustlr.runs.folder import run_in_folder

STEP = "step(milestones=[0.5], gamma=0.1)"
DATA = {"synthetic": {"num_examples": 240, "num_classes": 3, "shape": [1, 6, 6], "noise": 0.5}}


def _run(folder: Path, **train) -> Path:
    config = tiny(seeds=[0, 1], data=DATA, train={"epochs": 3, "batch_size": 32, "lr": 0.1,
                                                  "momentum": 0.9, **train})
    return run_in_folder(experiment.from_mapping(config), out=folder, show_progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    return _run(root / "a"), _run(root / "slow_lr", lr=0.001)


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / run_dir.name))


def _gate(*args):  # through the group, which turns errors into exit codes and one line
    return CliRunner().invoke(main, ["gate", *(str(a) for a in args)])


def _compare(*args):
    return CliRunner().invoke(main, ["compare", *(str(a) for a in args)])


def _summary(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "summary.json").read_text())


def _edit(run_dir: Path, change) -> None:
    """Rewrite each trial's row in the database: ``change(status, summary)`` returns the new
    (status, summary), or None to drop the trial."""
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        for trial, status, summary in db.execute("SELECT trial, status, summary FROM trials").fetchall():
            changed = change(status, json.loads(summary))
            if changed is None:
                db.execute("DELETE FROM epochs WHERE trial = ?", (trial,))
                db.execute("DELETE FROM trials WHERE trial = ?", (trial,))
            else:
                db.execute("UPDATE trials SET status = ?, summary = ? WHERE trial = ?",
                           (changed[0], None if changed[1] is None else json.dumps(changed[1]), trial))


def test_gate_passes_when_every_bound_holds(runs):
    result = _gate(runs[0], "--min", "clean_acc=20", "--max", "train_seconds=1e6")
    assert result.exit_code == 0, result.output
    assert "gate: passed" in result.output and "FAIL" not in result.output


def test_a_bound_on_a_value_the_run_does_not_have_fails(runs):
    # no DP, no poison: no epsilon, no ASR. A gate passing on them would certify nothing.
    result = _gate(runs[0], "--min", "clean_acc=20", "--max", "epsilon=3", "--max", "asr=10")
    assert result.exit_code == 1, result.output
    assert "FAIL (missing or not finite)" in result.output and "4 missing" in result.output


def test_one_seed_without_a_finite_value_fails_its_group(runs, tmp_path):
    run_dir = _copy(runs[0], tmp_path)
    # the store writes a non-finite number as null: what an infinite epsilon becomes
    _edit(run_dir, lambda status, s: (status, {**s, "clean_acc": None} if s["seed"] == 1 else s))
    checks = json.loads(_gate(run_dir, "--min", "clean_acc=0", "--json").output)["checks"]
    assert {c["status"] for c in checks} == {"missing"} and all(c["value"] is None for c in checks)
    assert _gate(run_dir, "--min", "clean_acc=0").exit_code == 1


def test_a_hand_edited_summary_json_is_not_trusted(runs, tmp_path):
    run_dir = _copy(runs[0], tmp_path)
    forged = [{**r, "clean_acc": 1.0} for r in _summary(run_dir)]
    (run_dir / "summary.json").write_text(json.dumps(forged))
    assert _gate(run_dir, "--min", "clean_acc=99.9").exit_code == 1
    (run_dir / "summary.json").write_text("not even JSON")
    assert _gate(run_dir, "--min", "clean_acc=0").exit_code == 0


def test_unfinished_trials_fail_the_gate_unless_finished_only(runs, tmp_path):
    run_dir = _copy(runs[0], tmp_path)
    statuses = iter(["running", "interrupted", "ok", "ok"])
    _edit(run_dir, lambda status, s: (next(statuses), s))
    result = _gate(run_dir, "--min", "clean_acc=0")
    assert result.exit_code == 1
    assert result.output.count("is unfinished") == 2 and "2 unfinished" in result.output
    finished_only = _gate(run_dir, "--min", "clean_acc=0", "--finished-only")
    assert finished_only.exit_code == 0, finished_only.output
    assert "skipped 2 unfinished trials (--finished-only)" in finished_only.output
    report = json.loads(_gate(run_dir, "--min", "clean_acc=0", "--finished-only", "--json").output)
    assert report["skipped"] == 2 and sum(c["seeds"] for c in report["checks"]) == 2


def test_gate_fails_with_exit_1_when_a_bound_is_broken(runs):
    result = _gate(runs[0], "--min", "clean_acc=101", "--max", "epsilon=3")
    assert result.exit_code == 1, result.output
    assert result.output.count("FAIL") >= 3  # both groups and the verdict
    checks = json.loads(_gate(runs[0], "--min", "clean_acc=101", "--json").output)["checks"]
    assert {c["status"] for c in checks} == {"fail"} and len(checks) == 2


def test_gate_reports_the_seed_mean_per_group(runs):
    output = _gate(runs[0], "--min", "clean_acc=0", "--json")
    assert output.exit_code == 0
    checks = json.loads(output.output)["checks"]
    for check in checks:
        values = [r["clean_acc"] for r in _summary(runs[0])
                  if r["schedule"] == check["group"]["schedule"]]
        assert check["seeds"] == 2 and check["value"] == pytest.approx(sum(values) / 2)


@pytest.mark.parametrize("args, message", [
    (["--min", "clean_accuracy=0.9"], "unknown metric 'clean_accuracy'; allowed: "),
    (["--min", "clean_acc"], "expected NAME=NUMBER"),
    (["--max", "epsilon=three"], "expected NAME=NUMBER"),
    (["--min", "=0.5"], "expected NAME=NUMBER"),
    ([], "at least one bound"),
    (["--min", "clean_acc=50", "--schedule", "cosine"], "--schedule: no trial matches 'cosine'"),
    (["--min", "clean_acc=0.96"], "clean_acc is in percent like the report (0-100): did you mean "
                                  "clean_acc=96?"),
])
def test_gate_bad_arguments_exit_2_with_one_line(runs, args, message):
    result = _gate(runs[0], *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("\n") == 1
    if "allowed" in message:
        assert "clean_acc, clean_acc_best" in result.output and "seed," not in result.output


def test_gate_on_a_folder_that_is_not_a_run_exits_2(tmp_path):
    result = _gate(tmp_path, "--min", "clean_acc=50")
    assert result.exit_code == 2 and "not a robustlr run folder" in result.output


def test_gate_schedule_filter_by_name_or_exact_spec(runs):
    for wanted in ("step", STEP, "step(gamma=0.1, milestones=[0.5])"):
        result = _gate(runs[0], "--min", "clean_acc=0", "--schedule", wanted, "--json")
        assert result.exit_code == 0, result.output
        assert [c["group"]["schedule"] for c in json.loads(result.output)["checks"]] == [STEP]
    assert _gate(runs[0], "--min", "clean_acc=0", "--regime", "pgd_at").exit_code == 2


def test_a_failed_trial_fails_the_gate_and_says_so(runs, tmp_path):
    run_dir = _copy(runs[0], tmp_path)
    records = _summary(run_dir)
    first = records[0]["trial"]
    _edit(run_dir, lambda status, s: ("failed", {**s, "status": "failed", "error": "RuntimeError: boom"})
          if s["trial"] == first else (status, s))
    result = _gate(run_dir, "--min", "clean_acc=0")
    assert result.exit_code == 1
    assert f"trial {records[0]['trial']}" in result.output and "failed: RuntimeError: boom" in result.output


def test_gate_reads_the_database_when_summary_json_is_missing(runs, tmp_path):
    run_dir = _copy(runs[0], tmp_path)
    (run_dir / "summary.json").unlink()
    rebuilt = _gate(run_dir, "--min", "clean_acc=0", "--json")
    original = _gate(runs[0], "--min", "clean_acc=0", "--json")
    assert rebuilt.exit_code == 0
    assert json.loads(rebuilt.output)["checks"] == json.loads(original.output)["checks"]


def test_compare_of_a_run_with_itself_shows_zero_change_and_flags_nothing(runs):
    result = _compare(runs[0], runs[0], "--json")
    assert result.exit_code == 0
    groups = json.loads(result.output)["groups"]
    assert len(groups) == 2
    metrics = [m for g in groups for m in g["metrics"]]
    assert {m["metric"] for m in metrics} == {"clean_acc", "clean_acc_best", "train_seconds"}
    assert all(m["change"] == 0 and not m["flagged"] for m in metrics)
    text = _compare(runs[0], runs[0]).output
    assert "0 changes beyond seed noise" in text and "CHANGED" not in text


def test_compare_flags_what_a_different_lr_changed(runs):
    result = _compare(runs[0], runs[1], "--json")
    assert result.exit_code == 0
    clean = [m for g in json.loads(result.output)["groups"] for m in g["metrics"]
             if m["metric"] == "clean_acc"]
    assert len(clean) == 2 and all(m["change"] < 0 for m in clean)  # LR 0.001 learns less
    assert any(m["flagged"] for m in clean)
    assert all(m["flagged"] == (abs(m["change"]) > 2 * m["se"]) for m in clean)
    assert "CHANGED" in _compare(runs[0], runs[1]).output


def test_compare_with_one_seed_per_side_has_no_noise_estimate(runs, tmp_path):
    run_dir = _copy(runs[1], tmp_path)
    _edit(run_dir, lambda status, s: (status, s) if s["seed"] == 0 else None)
    result = _compare(run_dir, run_dir)
    assert result.exit_code == 0 and "1 seed: no noise estimate" in result.output
    one_against_two = _compare(run_dir, runs[1]).output  # 1 vs 2 seeds: a pooled SE exists
    assert "no noise estimate" not in one_against_two and "1/2" in one_against_two


def test_compare_of_a_non_run_folder_exits_2(runs, tmp_path):
    result = _compare(runs[0], tmp_path)
    assert result.exit_code == 2 and "RUN_B" in result.output


def test_the_report_of_a_real_run_opens_with_the_verdict_and_keeps_percent(runs, tmp_path):
    run_dir = _copy(runs[0], tmp_path)
    build_report(run_dir, "tiny", _summary(run_dir), [])
    markdown = (run_dir / "report.md").read_text()
    verdict = markdown.index("## Verdict per threat model")
    assert verdict < markdown.index("## Ranking per threat model") < markdown.index("## Cost")
    assert "- Under standard, by clean accuracy (paired over 2 seeds, Holm-corrected)" in markdown
    assert (run_dir / "figures" / "verdict_frontiers.png").stat().st_size > 1000
    assert "frontier_robust_acc" not in markdown and "Trade-off frontiers" not in markdown


