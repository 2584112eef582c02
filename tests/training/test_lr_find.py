"""The LR range test: the LR of every step follows the exponential sweep, the sweep stops when
the loss diverges, the suggestion sits on the descent, adversarial sweeps record the robust
loss, DP sweeps the clipped fraction and the epsilon they spent; training at the suggestion
comes within a few points of the best LR of a coarse grid (standard, PGD-AT, DP); the CLI leaves
its three files or, on bad input, exit 2 and no folder."""

from __future__ import annotations

import csv
import json
import math

import pytest
from click.testing import CliRunner

from robustlr import experiment
from robustlr.cli import main
from robustlr.training import lr_find
from robustlr.training.trial import prepare_data
from tests.helpers import record_lrs, tiny, write_config


def digits():
    config = tiny(model={"name": "mlp", "hidden": [32]})
    config["data"] = {"name": "digits", "val_fraction": 0.1, "test_fraction": 0.1}
    return config


def sweep_of(tmp_path, regime="standard", config=None, **sweep):
    path = write_config(tmp_path / "c.yaml", config or tiny())
    config = experiment.load(path)
    data = prepare_data(config.data, 0)
    return lr_find.run(config, data, regime_spec=regime, seed=0,
                       sweep=lr_find.Sweep(**{"steps": 40, **sweep}))


def test_every_optimizer_step_takes_the_next_lr_of_the_exponential_sweep(tmp_path, monkeypatch):
    seen = record_lrs(monkeypatch)
    result = sweep_of(tmp_path, min_lr=1e-4, max_lr=1e-1, diverge_factor=1e9)
    assert result.stopped == "completed" and len(result.rows) == 40
    expected = [1e-4 * 1000 ** (i / 39) for i in range(40)]
    assert seen == pytest.approx(expected, rel=1e-12)
    assert [r["lr"] for r in result.rows] == pytest.approx(expected, rel=1e-12)


def test_the_sweep_stops_when_the_loss_diverges_and_suggests_an_lr_on_the_descent(tmp_path):
    # digits, not the separable synthetic set: there the loss reaches 0 and no LR diverges
    result = sweep_of(tmp_path, config=digits(), min_lr=1e-3, max_lr=1e3, steps=60)
    assert result.stopped == "diverged" and len(result.rows) < 60
    last = result.rows[-1]
    assert last["smoothed_loss"] > 4 * min(r["smoothed_loss"] for r in result.rows)
    assert result.suggested_lr is not None
    assert 1e-3 < result.suggested_lr < result.min_loss_lr <= last["lr"]


def test_the_suggestion_is_the_steepest_descent_before_the_minimum():
    lrs = [10 ** (k / 10) for k in range(-40, 1)]  # 1e-4 .. 1
    # flat, a steep fall centred on 1e-2, a minimum at ~0.1, then a rise past it
    losses = [2 - math.tanh(3 * (math.log10(lr) + 2)) + (5 * (lr - 0.1) ** 2 if lr > 0.1 else 0)
              for lr in lrs]
    result = lr_find.RangeTest(regime="standard", loss_kind="clean", sweep=lr_find.Sweep(),
                               rows=[{"lr": lr, "smoothed_loss": v} for lr, v in zip(lrs, losses)])
    lr_find._suggest(result)
    assert result.suggested_lr == pytest.approx(1e-2)
    assert result.min_loss_lr == pytest.approx(0.1)


def test_under_dp_the_suggestion_stays_a_tenth_below_the_minimum_loss_lr():
    """Issue 12: under DP the loss falls until just before divergence, so the steepest descent
    (0.61 there) trained to 36-52% against 82-83% at 0.05."""
    lrs = [10 ** (k / 10) for k in range(-30, 3)]  # 1e-3 .. ~1.6
    falling = [2.3 - 0.4 * math.log10(lr / 1e-3) ** 1.5 for lr in lrs]  # steepest near the end
    rows = [{"lr": lr, "smoothed_loss": v} for lr, v in zip(lrs, falling)]
    private = lr_find.RangeTest(regime="dp", loss_kind="private", sweep=lr_find.Sweep(), rows=rows)
    clean = lr_find.RangeTest(regime="standard", loss_kind="clean", sweep=lr_find.Sweep(),
                              rows=[dict(r) for r in rows])
    lr_find._suggest(private)
    lr_find._suggest(clean)
    assert clean.suggested_lr > 0.5 * clean.min_loss_lr  # the plain rule: near the edge
    assert private.suggested_lr == pytest.approx(private.min_loss_lr / 10)


def test_adversarial_sweeps_record_the_robust_loss(tmp_path):
    clean = sweep_of(tmp_path, steps=10, max_lr=1e-4)
    robust = sweep_of(tmp_path, "pgd_at(eps=0.3, steps=3)", steps=10, max_lr=1e-4)
    assert (clean.loss_kind, robust.loss_kind) == ("clean", "robust")
    # same initial weights and first batch: the attacked loss can only be higher
    assert robust.rows[0]["loss"] > clean.rows[0]["loss"] + 0.01


def test_dp_sweeps_record_the_clipped_fraction_and_the_epsilon_they_spent(tmp_path):
    tight = sweep_of(tmp_path, "dp(noise_multiplier=1.0, max_grad_norm=1e-4)", steps=12)
    # no noise: with noise the std is sigma x clip, and a clip of 1e4 would diverge the sweep
    loose = sweep_of(tmp_path, "dp(noise_multiplier=0.0, max_grad_norm=1e4)", steps=12)
    assert tight.loss_kind == "private"

    def fractions(result):  # an empty Poisson batch clips nothing: NaN, left out
        values = [r["clipped_fraction"] for r in result.rows if not math.isnan(r["clipped_fraction"])]
        assert len(values) >= 10
        return set(values)

    assert fractions(tight) == {1.0} and fractions(loose) == {0.0}
    assert tight.epsilon is not None and 0 < tight.epsilon < math.inf
    # the curve itself is exact on private batches: the summary must not pass it off as DP
    assert tight.summary()["covered_by_epsilon"] is False
    assert lr_find.RangeTest(regime="standard", loss_kind="clean",
                             sweep=lr_find.Sweep()).summary()["covered_by_epsilon"] is None


def test_the_cli_writes_the_table_the_suggestion_and_the_plot(tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny())
    out = tmp_path / "find"
    result = CliRunner().invoke(main, ["lr-find", str(config), "--out", str(out), "--steps", "30",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "suggested train.lr" in result.output
    rows = list(csv.DictReader((out / "lr_find.csv").open()))
    summary = json.loads((out / "lr_find.json").read_text())
    assert len(rows) == summary["steps_taken"] and float(rows[0]["lr"]) == pytest.approx(1e-5)
    assert summary["regime"] == "standard" and summary["suggested_lr"] > 0
    assert (out / "lr_find.png").stat().st_size > 1000


@pytest.mark.parametrize("arguments, field", [
    (["--min-lr", "1", "--max-lr", "0.1"], "--min-lr"),
    (["--steps", "3"], "--steps"),
    (["--regime", "nonsense"], "regime"),
])
def test_bad_input_exits_2_with_one_line_and_no_folder(tmp_path, arguments, field):
    config = write_config(tmp_path / "c.yaml", tiny())
    out = tmp_path / "find"
    result = CliRunner().invoke(main, ["lr-find", str(config), "--out", str(out), *arguments])
    assert result.exit_code == 2
    assert field in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("regime", ["standard", "pgd_at(eps=0.1, steps=3)",
                                    "dp(noise_multiplier=1.0, max_grad_norm=1.0)"])
def test_training_at_the_suggestion_comes_near_the_best_lr_of_a_coarse_grid(regime):
    """Short real training (digits, cnn, 600 examples, 4 epochs, SGD momentum 0.9). Measured
    under load: standard best 94.2% (lr 0.03), suggested 0.058 -> 93.9%; PGD-AT best 94.7%
    (0.03), suggested 0.073 -> 92.8%; DP best 79.7% (0.1), suggested before the DP rule 0.76 ->
    56.0%."""
    import torch

    from robustlr.grid import Trial
    from robustlr.training.loop import train_trial

    torch.set_num_threads(1)
    config = experiment.from_mapping({
        "name": "lr-check", "data": {"name": "digits", "limit": 600}, "model": "cnn",
        "train": {"epochs": 4, "batch_size": 64, "lr": 0.1, "momentum": 0.9},
        "schedules": ["constant"], "regimes": [regime]})
    data = prepare_data(config.data, 0)
    found = lr_find.run(config, data, regime_spec=regime, seed=0, sweep=lr_find.Sweep(steps=60))
    assert found.suggested_lr is not None

    def accuracy(lr: float) -> float:
        trial = Trial("constant", regime, lr / config.train.lr, 0)
        return train_trial(config, trial, data, on_epoch=lambda row: None)["clean_acc"]

    best = max(accuracy(lr) for lr in (0.01, 0.03, 0.1, 0.3))
    assert accuracy(found.suggested_lr) >= best - 0.05, found.suggested_lr
