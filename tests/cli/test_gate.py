"""``robustlr gate`` and ``robustlr compare`` on tiny two-seed runs, and the trade-off frontier
section of the report: exit codes are the contract a CI pipeline reads."""

from __future__ import annotations

import json
import shlex
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


def _run(folder: Path, config: dict | None = None, **train) -> Path:
    config = tiny(**{"seeds": [0, 1], **(config or {})}, data=DATA,
                  train={"epochs": 3, "batch_size": 32, "lr": 0.1, "momentum": 0.9, **train})
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


@pytest.mark.parametrize("bound, message", [
    ("epsilon=3", "--max epsilon: epsilon is defined for DP trials and none of the gated trials is one"),
    ("asr=10", "--max asr: asr is defined for poisoning trials and none of the gated trials is one"),
    ("robust_acc=100", "--max robust_acc: no gated trial records robust_acc")])
def test_a_bound_on_a_metric_no_gated_trial_has_is_an_input_error(runs, bound, message):
    """Issue 24: such bounds were 'missing' failures (82 of the README example's 108 broken
    checks on the default run); a gate that can only certify nothing is a wrong command."""
    result = _gate(runs[0], "--min", "clean_acc=20", "--max", bound)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


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
    result = _gate(runs[0], "--min", "clean_acc=101", "--max", "train_seconds=1e6")
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
    assert "0 changes beyond noise" in text and "CHANGED" not in text


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    config = {"seeds": [0, 1, 2], "schedules": ["constant"]}
    return _run(root / "a", config=config), _run(root / "b", lr=0.001, config=config)


def test_compare_flags_what_a_different_lr_changed_paired_over_seeds_and_examples(three_seeds):
    result = _compare(*three_seeds, "--json")
    assert result.exit_code == 0
    (clean,) = [m for g in json.loads(result.output)["groups"] for m in g["metrics"]
                if m["metric"] == "clean_acc"]
    assert clean["change"] < 0 and clean["flagged"]  # LR 0.001 learns less
    assert clean["paired_seeds"] == 3 and clean["examples"] == 48 and clean["p"] < 0.05
    assert "sign test" in clean["method"] and clean["unit"] == "%"
    text = _compare(*three_seeds).output
    assert "CHANGED" in text and "shares in percent" in text
    a, b = (sum(r["clean_acc"] for r in _summary(run)) / 3 for run in three_seeds)
    assert f"{a * 100:.2f}%" in text and f"{(b - a) * 100:+.2f} pts" in text  # percent, not 0.7


def test_compare_with_two_seeds_pairs_them_and_one_example_is_never_a_change(runs):
    result = _compare(runs[0], runs[1], "--json")
    clean = [m for g in json.loads(result.output)["groups"] for m in g["metrics"]
             if m["metric"] == "clean_acc"]
    assert all(m["paired_seeds"] == 2 and m["p"] is not None for m in clean)
    assert all(m["flagged"] == (m["p"] < 0.05) for m in clean)


def test_compare_refuses_runs_of_different_models_unless_allowed(runs, tmp_path):
    """Issue 24: a ResNet-18 run and a ViT run were paired as one group without a word."""
    other = _copy(runs[1], tmp_path)
    _edit(other, lambda status, s: (status, {**s, "model": "torchvision:resnet18"}))
    refused = _compare(runs[0], other)
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert "differ in model or data" in refused.output and "--allow-mixed" in refused.output
    assert "mlp(hidden=[16]) vs torchvision:resnet18" in refused.output
    allowed = CliRunner().invoke(main, ["compare", str(runs[0]), str(other), "--allow-mixed"])
    assert allowed.exit_code == 0 and "warning: RUN_A and RUN_B differ in model" in allowed.output
    _edit(other, lambda status, s: (status, {**s, "model": "mlp(hidden=[16])", "data_hash": "x"}))
    assert "data " in _compare(runs[0], other).output and _compare(runs[0], other).exit_code == 2


def test_gate_refuses_a_group_whose_seeds_differ_in_data(runs, tmp_path):
    run_dir = _copy(runs[0], tmp_path)
    _edit(run_dir, lambda status, s: (status, {**s, "data_hash": "other"} if s["seed"] == 1 else s))
    refused = _gate(run_dir, "--min", "clean_acc=0")
    assert refused.exit_code == 2 and "trials of one group differ in model or data" in refused.output
    assert _gate(run_dir, "--min", "clean_acc=0", "--allow-mixed").exit_code == 0


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
    assert ("- Under standard, by clean accuracy (paired over 2 seeds and 48 test examples, "
            "Holm-corrected)") in markdown
    assert (run_dir / "figures" / "verdict_frontiers.png").stat().st_size > 1000
    assert "frontier_robust_acc" not in markdown and "Trade-off frontiers" not in markdown




README = Path(__file__).resolve().parents[2] / "README.md"
THREAT_MODELS = {"seeds": [0, 1], "schedules": ["constant"],
                 "evaluation": {"attack": "pgd(eps=0.1, steps=3)", "subset": 30},
                 "grids": [{"regimes": ["standard"]},
                           {"regimes": [{"name": "dp", "target_epsilon": 3.0, "delta": 1.0e-5}]},
                           {"poisoning": ["badnets(rate=0.1, target=0, size=2)"]}]}


def _readme_gate() -> list[str]:
    (line,) = [line for line in README.read_text().splitlines()
               if line.startswith("robustlr gate RUN_DIR")]
    return shlex.split(line.split("#")[0])[1:]


def _holds(kind: str, mean: float, limit: float) -> bool:
    return mean >= limit if kind == "--min" else mean <= limit


def test_the_readme_gate_example_fails_or_passes_for_what_the_numbers_say(tmp_path):
    """Issue 24: on the default run the README's example broke 108 of 192 checks, 82 of them
    'missing' (asr exists only for poisoning, epsilon only for DP). Here it runs on a run with
    standard, DP and poisoning trials; every check is recomputed from summary.json."""
    run_dir = _run(tmp_path / "threats", config=THREAT_MODELS)
    args = _readme_gate()
    assert args[:2] == ["gate", "RUN_DIR"]
    bounds = [(kind, *text.split("=")) for kind, text in zip(args[2::2], args[3::2])]
    assert {name for _, name, _ in bounds} == {"clean_acc", "robust_acc", "epsilon", "asr"}
    groups: dict[tuple, list[dict]] = {}
    for record in _summary(run_dir):
        assert record["status"] == "ok", record.get("error")
        groups.setdefault((record["regime"], record["poison"]), []).append(record)
    expected = []
    for kind, name, limit in bounds:
        for (regime, poison), records in groups.items():
            if (name == "epsilon" and not regime.startswith("dp")) or (name == "asr" and poison == "none"):
                continue  # not defined for that threat model
            mean = sum(r[name] for r in records) / len(records)
            expected.append(_holds(kind, mean * (100 if name.endswith(("acc", "asr")) else 1),
                                   float(limit)))
    assert len(expected) == 2 * 3 + 1 + 1  # accuracies on every group, epsilon and asr on one
    result = _gate(*[a.replace("RUN_DIR", str(run_dir)) for a in args[1:]])
    assert result.exit_code == (0 if all(expected) else 1), result.output
    broken = expected.count(False)
    assert f"{len(expected)} checks, {broken} broken (0 missing)" in result.output
