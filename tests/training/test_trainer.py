"""The loop itself: the schedule is applied at every optimizer step, a constant schedule is
plain training, and schedule-free optimizers are evaluated at their evaluation weights."""

from __future__ import annotations

import pytest
import torch
from helpers import record_lrs, tiny

from robustlr import data, experiment, models, optimizers, schedules
from robustlr.grid import expand
from robustlr.modes import evaluating, training
from robustlr.training.loop import train_trial


def prepared(**overrides):
    config = experiment.from_mapping(tiny(**overrides))
    return config, data.prepare(config.data, seed=0)


@pytest.mark.parametrize("spec", ["cosine(warmup=0.1, floor=0.01)", "onecycle", "cyclic(cycles=2)"])
def test_every_optimizer_step_uses_the_schedule_at_its_progress(monkeypatch, spec):
    seen = record_lrs(monkeypatch)
    config, bundle = prepared(schedules=[spec], train={"epochs": 3, "lr": 0.3})
    trial = expand(config)[0]
    summary = train_trial(config, trial, bundle, on_epoch=lambda row: None)
    total = summary["steps"]
    schedule = schedules.parse(spec)
    assert len(seen) == total > 10
    assert seen == pytest.approx([0.3 * schedule(s / total) for s in range(total)], rel=1e-12)


def test_a_constant_schedule_is_plain_training(monkeypatch):
    config, bundle = prepared(schedules=["constant"], train={"epochs": 2, "lr": 0.1})
    trial = expand(config)[0]
    captured = {}
    monkeypatch.setattr("robustlr.training.loop.Regime.trained_model",
                        lambda self, model: captured.setdefault("model", model))
    train_trial(config, trial, bundle, on_epoch=lambda row: None)

    torch.manual_seed(trial.seed)
    generator = torch.Generator().manual_seed(trial.seed)
    model = models.build(config.model, input_shape=bundle.input_shape,
                         num_classes=bundle.num_classes, mean=bundle.mean, std=bundle.std)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = bundle.train
    for _ in range(2):
        for index in torch.randperm(len(y), generator=generator).split(32):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    for ours, reference in zip(captured["model"].parameters(), model.parameters()):
        torch.testing.assert_close(ours, reference, rtol=0, atol=0)


def test_schedule_free_is_evaluated_at_its_averaged_weights_and_restored():
    config, bundle = prepared(schedules=["schedule_free"], train={"optimizer": "sgd"})
    model = models.build(config.model, input_shape=bundle.input_shape,
                         num_classes=bundle.num_classes, mean=bundle.mean, std=bundle.std)
    optimizer = optimizers.build(config.train, model.parameters(), lr=0.1,
                                 schedule_free_warmup_steps=0)
    training(model, optimizer)
    x, y = bundle.train
    for index in torch.arange(len(y)).split(32):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[index]), y[index]).backward()
        optimizer.step()
    train_point = [p.detach().clone() for p in model.parameters()]
    with evaluating(model, optimizer):
        assert not model.training
        eval_point = [p.detach().clone() for p in model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(train_point, eval_point))
    assert model.training
    for restored, original in zip(model.parameters(), train_point):
        torch.testing.assert_close(restored, original)


# -- what the loop records: rows, summary, divergence, checkpoints (tiny runs, < 1 s each) -----
import math  # noqa: E402

from robustlr.distributed import World  # noqa: E402
from robustlr.errors import InputError  # noqa: E402
from robustlr.training import loop  # noqa: E402
from robustlr.training.evaluation import evaluate  # noqa: E402


def trained(tmp_path=None, **overrides):
    config, bundle = prepared(**overrides)
    trial = expand(config)[0]
    rows = []
    summary = train_trial(config, trial, bundle, on_epoch=rows.append, trial_dir=tmp_path,
                          save_model=tmp_path is not None)
    return config, bundle, trial, rows, summary


def test_each_epoch_row_and_the_summary_are_what_the_loop_measured(monkeypatch):
    captured = {}
    real = loop.Regime.trained_model
    monkeypatch.setattr(loop.Regime, "trained_model",
                        lambda self, model: captured.setdefault("model", real(self, model)))
    config, bundle, trial, rows, summary = trained(schedules=["cosine"],
                                                   train={"epochs": 3, "lr": 0.2})
    per_epoch = math.ceil(len(bundle.train[1]) / 32)  # 144 training examples, batches of 32
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["step"] for r in rows] == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    assert summary["steps"] == summary["planned_steps"] == 3 * per_epoch
    assert summary["status"] == "ok" and summary["epochs"] == 3
    for row in rows:
        assert row["trial"] == trial.id and 0 <= row["train_acc"] <= 1
        assert math.isfinite(row["train_loss"]) and row["train_loss"] > 0
        assert row["samples_per_second"] == pytest.approx(len(bundle.train[1])
                                                          / row["epoch_seconds"])
        assert [k for k in row if k.startswith("test_acc_class")] == \
            [f"test_acc_class{k}" for k in range(bundle.num_classes)]
    schedule = schedules.parse("cosine")
    assert rows[-1]["lr"] == pytest.approx(0.2 * schedule((3 * per_epoch - 1) / (3 * per_epoch)))
    model = captured["model"]
    final = evaluate(model, *bundle.test, num_classes=bundle.num_classes, batch_size=256)
    val = evaluate(model, *bundle.val, num_classes=bundle.num_classes, batch_size=256)
    assert (rows[-1]["test_acc"], rows[-1]["test_loss"]) == pytest.approx((final.acc, final.loss))
    assert (rows[-1]["val_acc"], rows[-1]["val_loss"]) == pytest.approx((val.acc, val.loss))
    assert summary["clean_acc"] == rows[-1]["test_acc"] and summary["val_acc"] == rows[-1]["val_acc"]
    assert summary["train_loss"] == rows[-1]["train_loss"] and summary["lr_final"] == rows[-1]["lr"]
    assert summary["per_class_acc"] == [rows[-1][f"test_acc_class{k}"]
                                        for k in range(bundle.num_classes)]
    per_class = summary["per_class_acc"]
    assert summary["worst_class_acc"] == min(per_class) == per_class[summary["worst_class"]]
    assert summary["worst_class_gap"] == pytest.approx(sum(per_class) / len(per_class) - min(per_class))
    assert summary["test_examples"] == len(bundle.test[1])
    best = max(range(3), key=lambda i: (rows[i]["val_acc"], -i))  # the first best epoch
    assert summary["best_epoch"] == best + 1
    assert summary["clean_acc_best"] == rows[best]["test_acc"]
    train_seconds = sum(r["epoch_seconds"] for r in rows)
    assert summary["train_seconds"] == pytest.approx(train_seconds, rel=1e-9)
    assert summary["samples_per_second"] == pytest.approx(3 * len(bundle.train[1]) / train_seconds)
    assert summary["wall_seconds"] >= summary["train_seconds"] > 0
    assert 0 <= summary["eval_seconds"] < summary["wall_seconds"]
    assert {k: summary[k] for k in ("schedule", "regime", "lr_scale", "seed")} == \
        {"schedule": "cosine", "regime": "standard", "lr_scale": 1.0, "seed": 0}


def test_a_diverging_trial_stops_in_its_first_epoch_with_status_diverged():
    _, bundle, _, rows, summary = trained(schedules=["constant"],
                                          train={"epochs": 3, "lr": 1e30})
    assert summary["status"] == "diverged" and rows == [] and summary["epochs"] == 0
    assert summary["steps"] < math.ceil(len(bundle.train[1]) / 32)
    assert summary["clean_acc"] is None and summary["best_epoch"] is None


@pytest.mark.parametrize("keep, files", [("none", {"model.pt"}), ("best", {"best.pt", "model.pt"}),
                                         ("last", {"last.pt", "model.pt"}),
                                         ("both", {"best.pt", "last.pt", "model.pt"})])
def test_checkpoints_keep_the_best_and_the_last_epoch_as_asked(tmp_path, keep, files):
    tmp_path = tmp_path / "trials" / "t1"  # made, parents included, when a file is written
    config, bundle, trial, rows, summary = trained(tmp_path, train={"epochs": 3,
                                                                    "checkpoints": keep})
    assert {p.name for p in tmp_path.iterdir()} == files
    for name, epoch in (("best.pt", summary["best_epoch"]), ("last.pt", 3), ("model.pt", None)):
        if name in files:
            extra = models.read_metadata(tmp_path / name)["extra"]
            assert extra["epoch"] == epoch and extra["trial"] == trial.id
            assert extra["schedule"] == trial.schedule and extra["data"]["seed"] == trial.seed


def test_selection_is_by_validation_accuracy_else_the_test_number():
    row = {"val_acc": 0.5, "test_acc": 0.9, "monitor_val_robust_acc": 0.2,
           "monitor_robust_acc": 0.7}
    assert loop._selection_score(row, robust=False) == 0.5
    assert loop._selection_score(row, robust=True) == 0.2
    no_val = {"val_acc": math.nan, "test_acc": 0.9, "monitor_robust_acc": 0.7}
    assert loop._selection_score(no_val, robust=False) == 0.9
    assert loop._selection_score(no_val, robust=True) == 0.7


def test_per_class_numbers_are_ordered_by_class_number_not_by_text():
    names = ["test_acc_class10", "test_acc_class2", "test_acc_classx", "test_acc_class0"]
    assert sorted(names, key=loop._class_key) == ["test_acc_classx", "test_acc_class0",
                                                  "test_acc_class2", "test_acc_class10"]


def test_the_averaged_summary_is_the_last_row_and_the_robust_gap():
    history = [{"avg_test_acc": 0.5, "avg_monitor_robust_acc": 0.3},
               {"avg_test_acc": 0.6, "avg_monitor_robust_acc": math.nan},
               {"avg_test_acc": 0.7, "avg_monitor_robust_acc": 0.2}]
    assert loop._averaged_summary(history) == {
        "avg_clean_acc": 0.7, "avg_monitor_robust_acc": 0.2, "avg_monitor_robust_acc_max": 0.3,
        "avg_robust_gap": pytest.approx(0.1)}
    assert loop._averaged_summary([{"avg_test_acc": 0.4}]) == {"avg_clean_acc": 0.4}
    gap = loop._averaged_summary([history[0], {"avg_test_acc": 0.6}])  # last row without it
    assert gap["avg_monitor_robust_acc"] is None and math.isnan(gap["avg_robust_gap"])
    assert gap["avg_monitor_robust_acc_max"] == 0.3
    assert loop._averaged_summary([]) == {"avg_clean_acc": None}


def test_resume_checkpoints_need_a_trial_folder_and_refuse_several_processes(tmp_path):
    config, _ = prepared(train={"checkpoint_every": 1})
    trial = expand(config)[0]
    assert loop._resume_dir(config, trial, None, World()) == (None, "")
    folder, key = loop._resume_dir(config, trial, tmp_path, World())
    assert folder == tmp_path / "resume" and len(key) > 8
    plain, _ = prepared()
    assert loop._resume_dir(plain, trial, tmp_path, World()) == (None, "")
    with pytest.raises(InputError, match="^train.checkpoint_every: resume checkpoints are not "
                                         "supported under train --nproc yet; leave it out$"):
        loop._resume_dir(config, trial, tmp_path, World(rank=0, size=2))


def test_a_resumed_trial_restores_its_progress_and_re_emits_its_rows(tmp_path, monkeypatch):
    """Interrupted after its last epoch's checkpoint: the resume re-emits every row (the store
    dropped them), trains nothing more and reports the uninterrupted summary."""
    from robustlr.training import checkpoint

    monkeypatch.setattr(checkpoint, "clear", lambda directory: None)  # as if killed before it
    config, bundle = prepared(train={"epochs": 2, "checkpoint_every": 1})
    trial = expand(config)[0]
    first_rows, again_rows = [], []
    first = train_trial(config, trial, bundle, on_epoch=first_rows.append, trial_dir=tmp_path)
    trained_steps = []
    real = loop._train_epoch
    monkeypatch.setattr(loop, "_train_epoch", lambda *a: trained_steps.append(1) or real(*a))
    again = train_trial(config, trial, bundle, on_epoch=again_rows.append, trial_dir=tmp_path)
    assert trained_steps == [] and again_rows == first_rows and len(first_rows) == 2
    assert not (tmp_path / "model.pt").exists()  # the model is saved only when asked
    timing = ("wall_seconds", "eval_seconds")
    assert {k: v for k, v in again.items() if k not in timing} == \
        {k: v for k, v in first.items() if k not in timing}


def test_an_epoch_row_is_the_mean_loss_and_accuracy_of_what_the_epoch_saw():
    from robustlr.training.evaluation import Evaluation

    config, _ = prepared()
    trial = expand(config)[0]
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.25)
    val, test = Evaluation(0.5, 0.6, [0.7]), Evaluation(0.8, 0.9, [1.0, 0.0])
    run = loop._Progress(steps=7)
    row = loop._epoch_row(trial, 2, run, optimizer, 6.0, 3.0, 4, 2.0, val, test)
    assert row == {"trial": trial.id, "epoch": 2, "step": 7, "lr": 0.25, "train_loss": 1.5,
                   "train_acc": 0.75, "val_loss": 0.5, "val_acc": 0.6, "test_loss": 0.8,
                   "test_acc": 0.9, "epoch_seconds": 2.0, "samples_per_second": 2.0,
                   "test_acc_class0": 1.0, "test_acc_class1": 0.0}
    empty = loop._epoch_row(trial, 1, run, optimizer, 0.0, 0.0, 0, 0.0, val, test)
    assert math.isnan(empty["train_loss"]) and math.isnan(empty["train_acc"])
    assert math.isnan(empty["samples_per_second"])


def test_a_plateau_schedule_scales_the_lr_by_its_tracker_once_per_epoch(monkeypatch):
    seen = record_lrs(monkeypatch)
    # a threshold no epoch can beat: after the first epoch every epoch is a bad one
    _, bundle, _, rows, summary = trained(
        schedules=["plateau(patience=0, factor=0.5, threshold=10.0)"],
        train={"epochs": 4, "lr": 0.1})
    per_epoch = math.ceil(len(bundle.train[1]) / 32)
    by_epoch = [seen[i * per_epoch:(i + 1) * per_epoch] for i in range(4)]
    for lrs, expected in zip(by_epoch, (0.1, 0.1, 0.05, 0.025)):  # observed after each epoch
        assert lrs == pytest.approx([expected] * per_epoch, rel=1e-12)


def test_the_trials_lr_scale_multiplies_the_configured_lr(monkeypatch):
    seen = record_lrs(monkeypatch)
    trained(schedules=["constant"], lr_scales=[0.25], train={"epochs": 1, "lr": 0.2})
    assert seen and seen == pytest.approx([0.05] * len(seen), rel=1e-12)


@pytest.mark.parametrize("spec, fraction", [("schedule_free(warmup=0.2)", 0.2),
                                            ("schedule_free", 0.05), ("cosine", None)])
def test_a_schedule_free_warmup_reaches_the_optimizer_as_steps(monkeypatch, spec, fraction):
    asked = []
    build = optimizers.build

    def recording(*args, **kwargs):
        asked.append(kwargs["schedule_free_warmup_steps"])
        return build(*args, **kwargs)

    monkeypatch.setattr("robustlr.training.setup.optimizers.build", recording)
    _, _, _, _, summary = trained(schedules=[spec], train={"epochs": 2, "optimizer": "sgd"})
    steps = summary["planned_steps"]
    assert asked == [None if fraction is None else round(fraction * steps)]


def test_the_best_epoch_follows_the_configured_selection_and_needs_no_folder():
    from types import SimpleNamespace

    plain, bundle = prepared()
    trial = expand(plain)[0]
    config = SimpleNamespace(train=SimpleNamespace(checkpoints="both"))  # as the loop reads it
    run = loop._Progress()
    for epoch, (val, robust) in enumerate([(0.9, 0.1), (0.5, 0.4), (0.95, 0.3)], start=1):
        run.history.append({"val_acc": val, "test_acc": val, "monitor_val_robust_acc": robust})
        loop._checkpoint(config, None, None, bundle, trial, run, epoch, private=False,
                         robust=True)  # no file
    assert (run.best_epoch, run.best_val) == (2, 0.4)
    assert loop._best_epoch_by(run, robust=True) == "monitor_val_robust_acc"


def test_a_regime_that_asks_to_stop_ends_the_trial_after_the_epochs_row(monkeypatch):
    rows_seen = []
    monkeypatch.setattr(loop.Regime, "epoch_metrics",
                        lambda self: rows_seen.append(1) or {})
    monkeypatch.setattr(loop.Regime, "stop_reason",
                        lambda self: "budget_exhausted" if rows_seen else None)
    _, bundle, _, rows, summary = trained(train={"epochs": 3})
    assert summary["status"] == "budget_exhausted" and summary["epochs"] == 1 and len(rows) == 1
    assert summary["steps"] == math.ceil(len(bundle.train[1]) / 32)


def test_resume_checkpoints_are_written_every_n_epochs(tmp_path, monkeypatch):
    from robustlr.training import checkpoint

    monkeypatch.setattr(checkpoint, "clear", lambda directory: None)
    written = []
    real = checkpoint.Writer.save
    monkeypatch.setattr(checkpoint.Writer, "save", lambda self, *, epoch, **kw: written.append(
        epoch) or real(self, epoch=epoch, **kw))
    trained(tmp_path, train={"epochs": 5, "checkpoint_every": 2})
    assert written == [2, 4]


def test_without_a_validation_split_the_plateau_tracker_watches_the_training_loss(monkeypatch):
    seen = record_lrs(monkeypatch)
    _, bundle, _, rows, _ = trained(
        schedules=["plateau(patience=0, factor=0.5, threshold=10.0)"],
        data={"val_fraction": 0.0}, train={"epochs": 3, "lr": 0.1})
    assert all(math.isnan(r["val_loss"]) for r in rows)
    per_epoch = math.ceil(len(bundle.train[1]) / 32)
    # a NaN metric would count as a bad first epoch and halve the lr one epoch early
    assert seen[per_epoch:2 * per_epoch] == pytest.approx([0.1] * per_epoch, rel=1e-12)
    assert seen[2 * per_epoch:] == pytest.approx([0.05] * per_epoch, rel=1e-12)


def test_the_averaged_model_is_saved_beside_the_final_one(tmp_path):
    _, bundle, trial, _, _ = trained(tmp_path, averaging=["ema(decay=0.9)"],
                                     train={"epochs": 2})
    raw, averaged = models.load(tmp_path / "model.pt"), models.load(tmp_path / "model_avg.pt")
    extra = models.read_metadata(tmp_path / "model_avg.pt")["extra"]
    assert extra["trial"] == trial.id and extra["data"]["seed"] == trial.seed
    assert any(not torch.equal(a, b) for a, b in zip(raw.parameters(), averaged.parameters()))
