"""`robustlr train --nproc 2`: one trial on two gloo processes equals the same trial in one.

Tolerances. The standard regime and DP without noise must agree to float32 rounding: with
equal shards (144 training examples, global batch 24, 12 per rank) the only difference is the
order of a sum (two shard gradients averaged by the all-reduce vs one batch), about 1e-7
relative per step; we allow rtol 1e-5 on losses and 1e-5 on the final weights (measured:
losses 1e-7 relative, weights 6e-8 standard / 2e-8 DP). Accuracies are counts and must be
equal. DP with noise draws other random numbers (rank 0's noise, the sharded Poisson mask),
so only epsilon (and the step count) must be identical; accuracy within 0.15.
"""

from __future__ import annotations

import copy
import csv
import json
import math

import pytest
import torch
from click.testing import CliRunner
from helpers import tiny, write_config

from robustlr import data, experiment, models
from robustlr.cli import main
from robustlr.grid import expand
from robustlr.results.store import Store
from robustlr.training.loop import train_trial


class _Capture:
    def __init__(self):
        self.model = None

    def epoch(self, model):
        return {}

    def final(self, model, trial_dir):
        self.model = copy.deepcopy(model)
        return {}


def _single(mapping):
    """The trial trained by the ordinary single-process trainer: rows, summary, model."""
    config = experiment.from_mapping(mapping)
    (trial,) = expand(config)
    rows, capture = [], _Capture()
    summary = train_trial(config, trial, data.prepare(config.data, seed=trial.seed),
                          on_epoch=rows.append, probes=[capture])
    return rows, summary, capture.model


def _train(tmp_path, mapping, *args):
    path = write_config(tmp_path / "config.yaml", mapping)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(path), "--out", str(out), *args])
    return result, out


def _two_processes(tmp_path, mapping):
    result, out = _train(tmp_path, mapping, "--nproc", "2", "--save-model")
    assert result.exit_code == 0, result.output
    (summary,) = json.loads((out / "summary.json").read_text())
    with (out / "epochs.csv").open() as handle:
        rows = [{k: float(v) if k != "trial" and v else v for k, v in row.items()}
                for row in csv.DictReader(handle)]
    model = models.load(out / "trials" / summary["trial"] / "model.pt")
    return rows, summary, model


CPU = {"device": "cpu"}  # gloo on CPU even where a GPU is visible


def _config(regime):
    return tiny(schedules=["cosine"], regimes=[regime],
                train={"epochs": 3, "batch_size": 24, **CPU})


def _assert_same_run(single, double):
    (rows_1, summary_1, model_1), (rows_2, summary_2, model_2) = single, double
    assert summary_2["world_size"] == 2 and summary_2["steps"] == summary_1["steps"] == 18
    assert len(rows_1) == len(rows_2) == 3
    private = summary_1.get("epsilon_training") is not None or "privacy_ledger" in summary_1
    for one, two in zip(rows_1, rows_2):
        assert two["step"] == one["step"] and two["lr"] == pytest.approx(one["lr"], rel=1e-12)
        if private:  # a DP trial withholds its exact training-batch statistics in both, and
            # the exports its private validation scores
            assert math.isnan(one["train_loss"]) and two["train_loss"] == two["train_acc"] == ""
            assert two["val_loss"] == two["val_acc"] == ""
        for key in ("test_loss",) if private else ("train_loss", "val_loss", "test_loss"):
            assert two[key] == pytest.approx(one[key], rel=1e-5), key
        for key in ("test_acc",) if private else ("train_acc", "val_acc", "test_acc"):
            assert two[key] == one[key], key
    for ours, reference in zip(model_2.parameters(), model_1.parameters()):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_two_processes_train_the_standard_regime_like_one(tmp_path):
    mapping = _config("standard")
    _assert_same_run(_single(mapping), _two_processes(tmp_path, mapping))


def test_dp_ddp_without_noise_equals_one_process_with_clipping_active(tmp_path):
    # ghost clipping (the default) through Opacus' distributed optimizer; a small clipping
    # norm so the per-sample clipping of each shard is what is compared
    mapping = _config("dp(noise_multiplier=0, max_grad_norm=0.5, poisson=false)")
    _assert_same_run(_single(mapping), _two_processes(tmp_path, mapping))


def test_noisy_dp_ddp_spends_the_same_epsilon_as_one_process(tmp_path):
    mapping = _config("dp(noise_multiplier=0.8, accountant=rdp)")
    rows_1, summary_1, _ = _single(mapping)
    rows_2, summary_2, _ = _two_processes(tmp_path, mapping)
    assert summary_2["status"] == "ok" and summary_2["world_size"] == 2
    assert summary_2["dp_steps"] == summary_1["dp_steps"] == 18
    assert summary_2["sample_rate"] == summary_1["sample_rate"]
    assert summary_2["epsilon"] == summary_1["epsilon"] > 0
    assert [r["epsilon"] for r in rows_2] == [r["epsilon"] for r in rows_1]
    assert abs(summary_2["clean_acc"] - summary_1["clean_acc"]) <= 0.15


def test_cli_leaves_the_run_folder_contract_for_the_chosen_trial(tmp_path):
    # two trials: --trial 1 picks the second; an adversarial regime attacks the module
    # inside DDP on every rank's shard
    mapping = tiny(regimes=["pgd_at(eps=0.1, steps=2)"], train={"epochs": 2, "batch_size": 24, **CPU})
    result, out = _train(tmp_path, mapping, "--nproc", "2", "--trial", "1")
    assert result.exit_code == 0, result.output
    (summary,) = json.loads((out / "summary.json").read_text())
    trial = expand(experiment.from_mapping(mapping))[1]
    assert summary["trial"] == trial.id and summary["status"] == "ok"
    assert summary["world_size"] == 2 and summary["epochs"] == 2
    with (out / "epochs.csv").open() as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]
    store = Store(out / "results.sqlite")
    try:
        assert [row["epoch"] for row in store.epochs(trial.id)] == [1, 2]
        assert store.status(trial.id) == "ok"
    finally:
        store.close()
    assert (out / "config.yaml").is_file() and (out / "report.html").is_file()


@pytest.mark.parametrize("args, message", [
    ((), "CONFIG expands to 2 trials; train one with --trial"),
    (("--trial", "7"), "--trial: index 7 is out of range"),
    (("--trial", "nope"), "--trial: no trial 'nope'"),
])
def test_an_ambiguous_or_bad_trial_choice_is_one_line_and_exit_2(tmp_path, args, message):
    result, out = _train(tmp_path, tiny(), "--nproc", "2", *args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not out.exists()
