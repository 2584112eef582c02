"""The privacy cost of the report's choices under DP (robustlr/results/selection.py and
report/selection_cost.py): the LR choice on private validation is report-noisy-max with its
own epsilon, a chosen model composes every run its choice read, a declared-public validation
split makes the choice free, and the verdict states the leader's total."""

from __future__ import annotations

import json
import math

import pytest
from fake_run import THREATS, fake_run

from robustlr.config import ReportConfig, default_path, from_mapping
from robustlr.config import load as load_config
from robustlr.privacy.selection import compose_runs
from robustlr.results.report import compose
from robustlr.results.report.threats import split
from robustlr.results.report.verdict import judge
from robustlr.results.selection import chosen_ledger, planned_selection_entries
from tests.helpers import tiny

SCHEDULES = ["constant", "cosine(warmup=0.05)", "onecycle"]
HISTORY = [(1.1, 0.05, 60)]  # every fake trial's DP-SGD: sigma, sample rate, steps


def dp_grid(schedules=SCHEDULES, **fields):
    summaries, rows = fake_run(schedules, threats=[THREATS[2]], lr_scales=(0.5, 1.0))
    for record in summaries:
        record.update(val_examples=270, noise_multiplier=1.1, sample_rate=0.05, dp_steps=60,
                      accountant="prv", **fields)
    return summaries, rows


def judged(summaries, select_lr="validation", epsilon=1.0):
    ((threat, records),) = split(summaries).items()
    return judge(threat, records, select_lr, selection_epsilon=epsilon)


def test_a_dp_grid_with_two_lr_scales_carries_each_choices_cost_and_the_leaders_total():
    summaries, _ = dp_grid()
    result = judged(summaries, epsilon=0.5)
    six = compose_runs([HISTORY] * 6, delta=1e-5)  # 2 scales x 3 seeds per schedule
    for entry in result.entries:
        names = [(e.name, e.mechanism) for e in entry.privacy.entries]
        assert names == [("candidate_runs", "composition"), ("lr_choice", "report_noisy_max")]
        assert entry.privacy.entries[0].detail["runs"] == 6
        assert entry.privacy.epsilon == pytest.approx(six + 0.5)
    leader = result.leader_privacy
    assert leader.entries[0].detail["runs"] == len(summaries) == 18
    assert [e.name for e in leader.entries[1:]] == ["lr_choice"] * 3 + ["leader_choice"]
    assert leader.entries[-1].mechanism == "public"  # chosen on test accuracy
    assert leader.epsilon == pytest.approx(compose_runs([HISTORY] * 18, delta=1e-5) + 3 * 0.5)
    assert six < leader.epsilon < 18 * 2.94


def test_the_verdict_and_the_tables_state_the_total_with_selection():
    summaries, rows = dp_grid()
    document = compose("t", summaries, rows, ReportConfig(select_lr="validation"))
    (sentence,) = [item for kind, value in document.blocks if kind == "bullets" for item in value]
    total = judged(summaries).leader_privacy.epsilon
    assert "ε = 2.94 per trial" in sentence
    assert f"ε = {total:.2f} (δ = 1e-05) for the leader with its selection included" in sentence
    assert "18 runs, 3 noisy LR choices at ε = 1" in sentence
    (table,) = [v for kind, v in document.blocks if kind == "table" and v.header[0] == "DP threat model"]
    assert [row[3] for row in table.rows] == ["6", "6", "6", "18"]
    assert table.rows[-1][4] == f"{total:.2f}"
    (ranking,) = [v for kind, v in document.blocks if kind == "table" and v.header[0] == "threat model"]
    assert all("epsilon per trial 2.94" in row[4] and "epsilon of the chosen model" in row[4]
               for row in ranking.rows)


def test_the_noisy_lr_choice_finds_a_clear_best_is_reproducible_and_is_noisy_on_ties():
    summaries, _ = dp_grid()
    for record in summaries:
        record["val_acc"] = 0.9 if record["lr_scale"] == 0.5 else 0.5  # 108 counts apart
    assert {e.runs[0]["lr_scale"] for e in judged(summaries).entries} == {0.5}
    many = [f"cosine(warmup={w / 100:g})" for w in range(1, 13)]
    tied, _ = dp_grid(many)
    for record in tied:
        record["val_acc"] = 0.8
    first = [e.runs[0]["lr_scale"] for e in judged(tied).entries]
    assert set(first) == {0.5, 1.0}  # an exact argmax would keep the first scale every time
    assert [e.runs[0]["lr_scale"] for e in judged(tied).entries] == first


def test_a_declared_public_validation_split_makes_the_choice_free_but_not_the_runs():
    summaries, _ = dp_grid(public_validation=True)
    for record in summaries:
        record["val_acc"] = 0.9 if record["lr_scale"] == 1.0 else 0.89
    result = judged(summaries)
    for entry in result.entries:
        choice = entry.privacy.entries[-1]
        assert (choice.name, choice.mechanism, choice.epsilon) == ("lr_choice", "public", 0.0)
        assert entry.privacy.epsilon == pytest.approx(compose_runs([HISTORY] * 6, delta=1e-5))
        assert entry.runs[0]["lr_scale"] == 1.0  # exact on public data


def test_without_lr_selection_the_leader_still_composes_every_schedules_runs():
    summaries, _ = dp_grid()
    result = judged(summaries, select_lr="none")
    assert all(entry.privacy is None for entry in result.entries)
    leader = result.leader_privacy
    assert [(e.name, e.mechanism) for e in leader.entries] == \
        [("candidate_runs", "composition"), ("leader_choice", "public")]
    assert leader.entries[0].detail["runs"] == 18


def test_an_older_run_without_its_validation_size_has_no_finite_epsilon_for_the_choice():
    summaries, rows = dp_grid()
    for record in summaries:
        del record["val_examples"]
    result = judged(summaries)
    assert all(e.privacy.entries[-1].mechanism == "none" for e in result.entries)
    assert result.leader_privacy.epsilon == math.inf
    document = compose("t", summaries, rows, ReportConfig(select_lr="validation"))
    (sentence,) = [item for kind, value in document.blocks if kind == "bullets" for item in value]
    assert "ε = ∞ (no DP guarantee) (δ" in sentence


def test_runs_ledgers_compose_once_per_run_and_a_reserved_choice_is_not_paid_again():
    def run(trial, shared):
        ledger = [{"name": "normalization", "mechanism": "gaussian", "epsilon": 0.1,
                   "delta": 0.0, "detail": {"shared": shared}},
                  {"name": "lr_choice", "mechanism": "report_noisy_max", "epsilon": 1.0,
                   "delta": 0.0, "detail": {}},
                  {"name": "dp_sgd", "mechanism": "subsampled_gaussian", "epsilon": 2.0,
                   "delta": 1e-5, "detail": {"noise": {"schedule": "linear", "min": 0.8},
                                             "sample_rate": 0.05, "steps": 40}}]
        return {"trial": trial, "regime": "dp(target_epsilon=3)", "privacy_ledger": ledger}

    for shared, normalization in ((False, 0.4), (True, 0.1)):
        ledger = chosen_ledger([run(f"t{i}", shared) for i in range(4)])
        assert [e.name for e in ledger.entries] == ["candidate_runs", "normalization"]
        assert ledger.entries[1].epsilon == pytest.approx(normalization)
        # a noise schedule's smallest noise at every step: an upper bound
        assert ledger.entries[0].epsilon == compose_runs([[(0.8, 0.05, 40)]] * 4, delta=1e-5)


def test_planned_selection_entries_name_the_choice_before_anything_trains():
    default = load_config(default_path())
    (entry,) = planned_selection_entries(default)
    assert (entry.name, entry.mechanism, entry.epsilon) == ("lr_choice", "report_noisy_max", 1.0)
    assert entry.detail["candidates"] == 2 and entry.detail["regime"].startswith("dp(")
    assert planned_selection_entries(default, "dp(target_epsilon=3.0, delta=1e-05)") == (entry,)
    assert planned_selection_entries(default, "standard") == ()
    public = from_mapping(tiny(regimes=["dp(target_epsilon=3)"], lr_scales=[0.5, 1.0],
                               data={"public_validation": True},
                               report={"select_lr": "validation", "selection_epsilon": 0.3}))
    (free,) = planned_selection_entries(public)
    assert (free.mechanism, free.epsilon) == ("public", 0.0)
    private = from_mapping(tiny(regimes=["dp(target_epsilon=3)"], lr_scales=[0.5, 1.0],
                                report={"select_lr": "validation", "selection_epsilon": 0.3}))
    assert planned_selection_entries(private)[0].epsilon == 0.3
    unchosen = from_mapping(tiny(regimes=["dp(target_epsilon=3)"], lr_scales=[0.5, 1.0]))
    assert planned_selection_entries(unchosen) == ()


def test_a_real_dp_runs_report_states_the_composed_total_of_its_trials(tmp_path):
    from robustlr.runs.folder import run_in_folder

    config = from_mapping(tiny(regimes=["dp(noise_multiplier=1.0)"], lr_scales=[0.5, 1.0],
                               train={"epochs": 2}, report={"select_lr": "validation"}))
    run_dir = run_in_folder(config, out=tmp_path / "run", workers=1, show_progress=False)
    summaries = json.loads((run_dir / "summary.json").read_text())
    assert all(r["val_examples"] > 0 and r["best_epoch"] is None for r in summaries)
    histories = [[(r["noise_multiplier"], r["sample_rate"], r["dp_steps"])] for r in summaries]
    total = compose_runs(histories, delta=summaries[0]["delta"]) + 2 * 1.0
    report = (run_dir / "report.md").read_text()
    assert f"ε = {total:.2f} (δ = {summaries[0]['delta']:.1g}) for the leader" in report
    assert "4 runs, 2 noisy LR choices at ε = 1, leader on test accuracy" in report
