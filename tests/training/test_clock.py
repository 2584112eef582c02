"""The trainer's clock, pinned on tiny trials (each test well under a few seconds): the progress
every optimizer step sees, a mid-way resume that continues the same clock, the resume key, the
summary's best epoch and throughput, and the distributed branch of an epoch (a fake world)."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from helpers import tiny

from robustlr import data, experiment
from robustlr.distributed import World
from robustlr.errors import InputError
from robustlr.grid import expand
from robustlr.regimes.base import Regime
from robustlr.training import checkpoint, loop, setup
from robustlr.training.loop import train_trial
from robustlr.training.probes.base import Probe


def _prepared(**overrides):
    config = experiment.from_mapping(tiny(**overrides))
    return config, data.prepare(config.data, seed=0)


def _without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if "seconds" not in k and k != "samples_per_second"}


def test_the_regime_sees_the_progress_of_the_step_it_is_about_to_take(monkeypatch):
    """before_step and losses get progress = optimizer steps taken / planned steps."""
    before, losses = [], []
    real_before, real_losses = Regime.before_step, Regime.losses
    monkeypatch.setattr(Regime, "before_step",
                        lambda self, *, progress: before.append(progress)
                        or real_before(self, progress=progress))
    monkeypatch.setattr(Regime, "losses",
                        lambda self, model, x, y, *, progress: losses.append(progress)
                        or real_losses(self, model, x, y, progress=progress))
    config, bundle = _prepared(train={"epochs": 2}, schedules=["constant"])
    summary = train_trial(config, expand(config)[0], bundle, on_epoch=lambda row: None)
    total = summary["planned_steps"]
    assert before == losses == [step / total for step in range(total)]


def test_backward_returns_the_loss_detached_and_works_without_a_recipe():
    config, bundle = _prepared()
    prepared = setup.prepare(config, bundle, regime_spec="standard", seed=0, lr=0.1,
                             total_steps=lambda per_epoch: per_epoch)
    x, y = next(iter(prepared.setup.loader))
    out = setup.backward(prepared.setup, prepared.regime, x, y, progress=0.0)
    assert not out["loss"].requires_grad and set(out) >= {"loss", "logits"}
    assert all(p.grad is not None for p in prepared.setup.model.parameters())


class _Interrupted(Exception):
    pass


class _CountingProbe(Probe):
    """A probe with state: the epochs it has seen, restored on resume."""

    def __init__(self):
        self.epochs = 0

    def epoch(self, model):
        self.epochs += 1
        return {}

    def final(self, model, trial_dir):
        return {"probe_epochs": self.epochs}

    def state_dict(self):
        return {"epochs": self.epochs}

    def load_state_dict(self, state):
        self.epochs = state["epochs"]


def test_a_trial_killed_after_epoch_1_resumes_at_epoch_2_with_its_whole_state(
        tmp_path, monkeypatch, caplog):
    """Interrupted right after its epoch-1 checkpoint, a plateau trial with EMA resumes at
    epoch 2 (logged), with its tracker, averager and clock restored: the same rows and summary
    as the run never interrupted."""
    config, bundle = _prepared(
        schedules=["plateau(patience=0, factor=0.5, threshold=10.0)"], averaging=["ema(decay=0.5)"],
        train={"epochs": 3, "checkpoint_every": 1})
    trial = expand(config)[0]
    expected_rows: list[dict] = []
    expected = train_trial(config, trial, bundle, on_epoch=expected_rows.append,
                           trial_dir=tmp_path / "reference", save_model=True,
                           probes=[_CountingProbe()])
    save = checkpoint.Writer.save

    def saving_then_dying(self, *, epoch, **kwargs):
        save(self, epoch=epoch, **kwargs)
        self.wait()
        raise _Interrupted

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint.Writer, "save", saving_then_dying)
        with pytest.raises(_Interrupted):
            train_trial(config, trial, bundle, on_epoch=lambda row: None,
                        trial_dir=tmp_path / "killed", probes=[_CountingProbe()])
    rows: list[dict] = []
    with caplog.at_level(logging.INFO, logger="robustlr"):
        resumed = train_trial(config, trial, bundle, on_epoch=rows.append,
                              trial_dir=tmp_path / "killed", save_model=True,
                              probes=[_CountingProbe()])
    assert [r.getMessage() for r in caplog.records if "resumed" in r.getMessage()] == \
        [f"trial resumed after epoch 1 from {tmp_path / 'killed' / 'resume'}"]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [_without_timing(r) for r in rows] == [_without_timing(r) for r in expected_rows]
    assert _without_timing(resumed) == _without_timing(expected)
    assert resumed["probe_epochs"] == 3  # the probe's state came back with the checkpoint
    for name in ("model.pt", "model_avg.pt"):  # the averaged weights continue the same average
        saved = [torch.load(tmp_path / run / name, weights_only=False)["state_dict"]
                 for run in ("reference", "killed")]
        assert all(torch.equal(saved[0][k], saved[1][k]) for k in saved[0])


def test_the_resume_key_changes_with_the_config_and_with_the_trial(tmp_path):
    config, _ = _prepared(train={"checkpoint_every": 1})
    other, _ = _prepared(train={"checkpoint_every": 1, "lr": 0.2})
    first, second = expand(config)[:2]
    folder, key = loop._resume_dir(config, first, tmp_path, World())
    assert folder == tmp_path / "resume"
    assert key != loop._resume_dir(other, first, tmp_path, World())[1]
    assert key != loop._resume_dir(config, second, tmp_path, World())[1]


def test_the_summary_takes_the_best_epochs_row_and_no_throughput_without_time():
    config, _ = _prepared()
    trial = expand(config)[0]
    run = loop._Progress(steps=4, train_seconds=0.0, samples=10, best_epoch=1, history=[
        {"epoch": 1, "test_acc": 0.9, "val_acc": 0.8, "train_loss": 1.0},
        {"epoch": 2, "test_acc": 0.5, "val_acc": 0.4, "train_loss": 0.5}])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.25)
    summary = loop._summary(trial, run, 1.0, Regime(), optimizer)
    assert summary["clean_acc_best"] == 0.9 and summary["clean_acc"] == 0.5
    assert summary["samples_per_second"] is None and summary["lr_final"] == 0.25


class _FakeWorld(World):
    """Two ranks whose other rank saw nothing: sums are this rank's numbers."""

    def __init__(self):
        super().__init__(rank=0, size=2)
        self.flags = []

    def any(self, flag, device):  # as World.any: the flag goes into a float tensor
        value = float(flag) > 0
        self.flags.append((value, device))
        return value

    def sum(self, *values, device):  # as World.sum: floats
        self.sums = (values, device)
        return [float(v) for v in values]


def _epoch_setup(**train):
    config, bundle = _prepared(train=train)
    prepared = setup.prepare(config, bundle, regime_spec="standard", seed=0, lr=0.1,
                             total_steps=lambda per_epoch: per_epoch)
    prepared.setup.world = _FakeWorld()
    return prepared


def test_a_distributed_epoch_sums_its_numbers_over_the_ranks():
    prepared = _epoch_setup()
    run = loop._Progress()
    loss, correct, seen = loop._train_epoch(prepared.setup, prepared.regime, prepared.recipe,
                                            lambda progress: 1.0, None, run, None)
    world = prepared.setup.world
    assert run.status == "ok" and run.steps == len(prepared.setup.loader)
    assert world.flags == [(False, prepared.setup.device)] * run.steps
    values, device = world.sums
    assert device == prepared.setup.device and values[2] == seen == len(prepared.setup.train_data[1])
    assert float(values[0]) == pytest.approx(float(loss)) and float(values[1]) == float(correct)
    assert isinstance(seen, int) and 0 < float(correct) <= seen


def test_a_distributed_epoch_stops_all_ranks_after_the_step_that_went_non_finite(monkeypatch):
    prepared = _epoch_setup()
    real = Regime.losses
    calls = []

    def nan_on_second(self, model, x, y, *, progress):
        out = real(self, model, x, y, progress=progress)
        calls.append(1)
        return {**out, "loss": out["loss"] * math.nan} if len(calls) == 2 else out

    monkeypatch.setattr(Regime, "losses", nan_on_second)
    run = loop._Progress()
    _, _, seen = loop._train_epoch(prepared.setup, prepared.regime, prepared.recipe,
                                   lambda progress: 1.0, None, run, None)
    assert run.status == "diverged" and run.steps == 2 and len(calls) == 2 and seen == 2 * 32
    assert [flag for flag, _ in prepared.setup.world.flags] == [False, True]


class _RecordingProbe(Probe):
    """What the loop hands a probe: the model (and its mode, and a BatchNorm mean) per call."""

    def __init__(self):
        self.calls = []

    def _seen(self, kind, model):
        norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        self.calls.append((kind, model, model.training, norm.running_mean.clone()))

    def epoch(self, model):
        self._seen("epoch", model)
        return {"probe_epoch": 1.0}

    def averaged(self, model):
        self._seen("averaged", model)
        return {"avg_probe": 2.0}

    def final(self, model, trial_dir):
        self._seen("final", model)
        return {"probe_final": str(trial_dir)}


def test_swa_with_batchnorm_gives_each_probe_the_model_it_measures(tmp_path, monkeypatch):
    """Per epoch a probe sees the trained module in eval mode, then the SWA weights with their
    BatchNorm statistics recomputed over the training batches; at the end the final model
    and the trial folder. Every evaluation uses the configured batch size, with the trial's
    own model, optimizer and regime switched to evaluation."""
    batch_sizes, switched = [], []
    real_evaluate, real_evaluating = loop.evaluate, loop.evaluating
    monkeypatch.setattr(loop, "evaluate", lambda *a, **k: batch_sizes.append(k["batch_size"])
                        or real_evaluate(*a, **k))
    monkeypatch.setattr(loop, "evaluating", lambda *a: switched.append(a) or real_evaluating(*a))
    prepare_real = loop.prepare
    built = []
    monkeypatch.setattr(loop, "prepare", lambda *a, **k: built.append(prepare_real(*a, **k))
                        or built[-1])
    config, bundle = _prepared(
        model={"name": "cnn", "norm": "batch", "width": 4, "hidden": 8},
        averaging=["swa(start=0.0)"], schedules=["constant"],
        train={"epochs": 2}, evaluation={"batch_size": 7})
    probe = _RecordingProbe()
    rows = []
    summary = train_trial(config, expand(config)[0], bundle, on_epoch=rows.append,
                          trial_dir=tmp_path, probes=[probe], save_model=True)
    (prepared,) = built
    plain = prepared.regime.trained_model(prepared.setup.model)
    assert set(batch_sizes) == {7} and len(batch_sizes) == 2 * 3  # val, test, averaged test
    assert switched == [(plain, prepared.setup.optimizer, prepared.regime)] * 3  # 2 epochs, 1 probe
    assert [kind for kind, *_ in probe.calls] == ["epoch", "averaged"] * 2 + ["final"]
    assert all(model is plain and not training for _, model, training, _ in probe.calls)
    assert all(row["probe_epoch"] == 1.0 and row["avg_probe"] == 2.0 for row in rows)
    assert summary["probe_final"] == str(tmp_path) and (tmp_path / "model_avg.pt").exists()
    # the averaged call saw BatchNorm statistics recomputed over the training data
    raw_mean, averaged_mean = probe.calls[2][3], probe.calls[3][3]
    assert not torch.equal(raw_mean, averaged_mean)


def test_each_rank_trains_on_its_shard_of_the_same_global_batches():
    from robustlr.distributed import ShardedBatches

    config, bundle = _prepared()
    device = torch.device("cpu")
    plain = setup._loader(config, bundle, torch.Generator().manual_seed(3), device, World())
    assert isinstance(plain, setup.TensorBatches) and plain.batch_size == 32
    shards = [setup._loader(config, bundle, torch.Generator().manual_seed(3), device,
                            World(rank=rank, size=2)) for rank in (0, 1)]
    assert all(isinstance(s, ShardedBatches) and s.world.rank == r for r, s in enumerate(shards))
    for (x, y), (x0, y0), (x1, y1) in zip(plain, *shards, strict=True):
        assert torch.equal(torch.cat([y0, y1]).sort().values, y.sort().values)
        assert torch.equal(torch.cat([x0, x1]).sum(0), x.sum(0))


def test_a_batch_too_small_to_share_is_refused_before_training():
    config, bundle = _prepared()  # 144 training examples: the last batch of 32 holds 16
    with pytest.raises(ValueError, match="leaves a batch of 16 for 17 processes"):
        setup._loader(config, bundle, torch.Generator(), torch.device("cpu"),
                      World(rank=0, size=17))


@pytest.mark.parametrize("augment", [[], ["hflip"]])
def test_streamed_data_goes_to_a_loader_with_the_trials_settings(monkeypatch, augment):
    import dataclasses

    config, bundle = _prepared(data={"augment": augment, "workers": 3})
    stream = object()
    bundle = dataclasses.replace(bundle, train_stream=stream)
    calls = []
    monkeypatch.setattr(setup.streaming, "loader", lambda examples, **k: calls.append((examples, k))
                        or "loader")
    generator, device = torch.Generator(), torch.device("cpu")
    assert setup._loader(config, bundle, generator, device, World()) == "loader"
    ((examples, kwargs),) = calls
    transform = kwargs.pop("transform")
    assert examples is stream and kwargs == {"batch_size": 32, "generator": generator,
                                             "device": device, "workers": 3}
    assert (transform is None) == (not augment)
    with pytest.raises(InputError, match="^data.stream: streamed training data is not supported "
                                         "with train --nproc yet; set data.stream: false$"):
        setup._loader(config, bundle, generator, device, World(rank=0, size=2))


def test_in_memory_batches_live_on_the_trials_device():
    """The data moves to the device once (the meta device stands in for a GPU here)."""
    x, y = torch.randn(10, 3), torch.arange(10)
    batches = setup.TensorBatches(x, y, batch_size=4, generator=torch.Generator().manual_seed(0),
                                  device=torch.device("meta"))
    assert batches.x.device.type == batches.y.device.type == "meta" and len(batches) == 3
    assert [len(yb) for _, yb in batches] == [4, 4, 2]


@pytest.mark.parametrize("averaging, per_step", [("ema(decay=0.5, start=0.5)", True),
                                                 ("swa(start=0.5)", False)])
def test_the_averager_is_updated_at_the_progress_after_each_step_or_epoch(monkeypatch, averaging,
                                                                          per_step):
    from robustlr.training.averaging import Averager

    seen = []
    real = Averager.update
    monkeypatch.setattr(Averager, "update",
                        lambda self, *, progress: seen.append(progress) or real(self, progress=progress))
    config, bundle = _prepared(train={"epochs": 2}, schedules=["constant"], averaging=[averaging])
    summary = train_trial(config, expand(config)[0], bundle, on_epoch=lambda row: None)
    total = summary["planned_steps"]
    every = 1 if per_step else total // 2
    assert seen == [step / total for step in range(every, total + 1, every)]


def test_the_summary_lists_per_class_accuracy_in_class_order():
    config, _ = _prepared()
    run = loop._Progress(best_epoch=1, train_seconds=2.0, samples=10, history=[
        {"epoch": 1, "test_acc": 0.5, "test_acc_class10": 0.1, "test_acc_class2": 0.2,
         "test_acc_class0": 0.0}])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.25)
    summary = loop._summary(expand(config)[0], run, 1.0, Regime(), optimizer)
    assert summary["per_class_acc"] == [0.0, 0.2, 0.1] and summary["samples_per_second"] == 5.0


def test_the_plateau_tracker_watches_the_validation_loss_and_the_clock_is_wall_time(monkeypatch):
    import time

    from robustlr.schedules.special import PlateauTracker

    observed = []
    real = PlateauTracker.observe
    monkeypatch.setattr(PlateauTracker, "observe",
                        lambda self, value: observed.append(value) or real(self, value))
    config, bundle = _prepared(train={"epochs": 2}, schedules=["plateau(patience=0)"])
    rows = []
    started = time.perf_counter()
    summary = train_trial(config, expand(config)[0], bundle, on_epoch=rows.append)
    elapsed = time.perf_counter() - started
    assert observed == [row["val_loss"] for row in rows]
    assert 0 < summary["train_seconds"] <= summary["wall_seconds"] <= elapsed
    assert 0 <= summary["eval_seconds"] <= summary["wall_seconds"]


def _one_epoch(prepared, run=None):
    run = run or loop._Progress()
    numbers = loop._train_epoch(prepared.setup, prepared.regime, prepared.recipe,
                                lambda progress: 0.0, None, run, None)
    return numbers, run


def test_an_epochs_loss_and_accuracy_are_sums_over_every_example_it_saw():
    """At LR 0 the model never moves: the epoch's sums are those of the model on the data."""
    prepared = _epoch_setup()
    prepared.setup.world = World()
    (loss, correct, seen), run = _one_epoch(prepared)
    x, y = prepared.setup.train_data
    with torch.no_grad():
        logits = prepared.setup.model(x)
    assert run.steps == len(prepared.setup.loader) and seen == len(y)
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, y, reduction="sum")
                                 .item(), rel=1e-5)
    assert correct == (logits.argmax(1) == y).sum().item()


@pytest.mark.parametrize("stops_at", ["before_the_first_step", "after_the_first_step"])
def test_an_epoch_the_regime_stops_still_returns_what_it_saw(monkeypatch, stops_at):
    prepared = _epoch_setup()
    prepared.setup.world = World()
    calls = []

    def stop_reason(self):
        calls.append(1)
        return "stop" if stops_at == "before_the_first_step" or len(calls) >= 2 else None

    monkeypatch.setattr(type(prepared.regime), "stop_reason", stop_reason)
    (loss, correct, seen), run = _one_epoch(prepared)
    expected = 0 if stops_at == "before_the_first_step" else 32
    assert seen == expected and run.steps == expected // 32 and run.status == "ok"


def test_a_non_finite_loss_ends_the_epoch_as_diverged_with_no_step(monkeypatch):
    prepared = _epoch_setup()
    prepared.setup.world = World()
    real = Regime.losses
    monkeypatch.setattr(Regime, "losses", lambda self, model, x, y, *, progress: {
        **(out := real(self, model, x, y, progress=progress)), "loss": out["loss"] * math.nan})
    (loss, correct, seen), run = _one_epoch(prepared)
    assert run.status == "diverged" and run.steps == 0 and seen == 0


def test_prepare_hands_the_regime_the_trials_plan_and_augments_in_memory_batches():
    from robustlr.data import augment

    config, bundle = _prepared(data={"augment": ["hflip"]}, train={"channels_last": True},
                               model={"name": "cnn", "norm": "group", "width": 4, "hidden": 8})
    world = World()
    prepared = setup.prepare(config, bundle, regime_spec="standard", seed=0, lr=0.1,
                             total_steps=lambda per_epoch: 3 * per_epoch, world=world)
    s = prepared.setup
    per_epoch = len(s.loader)
    assert (s.total_steps, s.epochs, s.dataset_size, s.batch_size) == (3 * per_epoch, 3, 144, 32)
    assert s.device == torch.device("cpu") and s.world is world
    assert s.train_data[1] is bundle.train[1]
    assert isinstance(s.loader, augment.AugmentedBatches) and s.loader.generator is s.generator
    assert isinstance(s.loader.loader, setup.TensorBatches)
    # a kernel with one input channel is contiguous in both layouts: look at the wider one
    conv = next(p for p in s.model.parameters() if p.dim() == 4 and p.shape[1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_a_trial_prepares_its_model_and_batches_for_the_rank_it_was_given(monkeypatch):
    """train_trial hands its World to prepare: a rank of a DDP trial that prepared as if alone
    would train on every example instead of its shard (and on the first GPU, not its own).
    A real two-process run is tests/runs/test_ddp.py; this spares the clock's fast tests it."""
    seen = []

    def stop_at_prepare(*args, **kwargs):
        seen.append(kwargs["world"])
        raise _Interrupted

    monkeypatch.setattr(loop, "prepare", stop_at_prepare)
    config, bundle = _prepared(schedules=["constant"])
    rank = World(rank=1, size=2, local_rank=1)
    with pytest.raises(_Interrupted):
        train_trial(config, expand(config)[0], bundle, on_epoch=lambda row: None, world=rank)
    assert seen == [rank] and seen[0] is rank
