"""Adversarial training and robustness evaluation: a zero-epsilon regime is standard training,
PGD-AT trains on perturbed inputs, the epsilon ramp follows its schedule, bad regime
parameters are one-line config errors, the robustness probe's fields, catastrophic-overfitting
detection, and the ``robustlr attack`` command."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from click.testing import CliRunner
from helpers import TINY, tiny

from robustlr import config as config_module
from robustlr import data, experiment, models, schedules
from robustlr.cli.app import main
from robustlr.grid import expand
from robustlr.regimes import REGIMES
from robustlr.results.report import Document
from robustlr.results.report.robustness import robustness_section
from robustlr.runs.folder import run_in_folder
from robustlr.training.loop import train_trial
from robustlr.training.probes import build_probes
from robustlr.training.probes.robustness import catastrophic_overfitting

TIMING = {"epoch_seconds", "samples_per_second"}


def train(overrides: dict, *, probes: bool = False) -> dict[str, tuple[dict, list[dict]]]:
    """Every trial of a tiny config: regime -> (summary, epoch rows)."""
    config = experiment.from_mapping(tiny(**overrides))
    bundle = data.prepare(config.data, seed=0)
    results = {}
    for trial in expand(config):
        rows: list[dict] = []
        summary = train_trial(config, trial, bundle, on_epoch=rows.append,
                              probes=build_probes(config, trial, bundle) if probes else None)
        results[trial.regime] = (summary, rows)
    return results


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING | {"trial"}} for row in rows]


def test_a_zero_epsilon_adversarial_regime_is_standard_training():
    regimes = ["standard", "pgd_at(eps=0)", "fgsm_rs(eps=0)", "trades(eps=0, beta=0)"]
    results = train({"schedules": ["step(milestones=[0.5], gamma=0.1)"], "regimes": regimes})
    expected = without_timing(results["standard"][1])
    assert len(expected) == 3
    for regime in regimes[1:]:
        assert without_timing(results[regime][1]) == expected, regime


def test_pgd_at_trains_on_perturbed_inputs_inside_the_epsilon_ball():
    config = experiment.from_mapping(tiny())
    bundle = data.prepare(config.data, seed=0)
    torch.manual_seed(0)
    model = models.build(config.model, input_shape=bundle.input_shape,
                         num_classes=bundle.num_classes, mean=bundle.mean, std=bundle.std)
    seen: list[tuple[bool, torch.Tensor]] = []
    model.register_forward_pre_hook(lambda module, args: seen.append((module.training, args[0])))
    regime = REGIMES.build("pgd_at(eps=0.1, steps=3)")
    regime.generator = torch.Generator().manual_seed(0)
    x, y = bundle.train[0][:32], bundle.train[1][:32]
    model.train()
    out = regime.losses(model, x, y, progress=0.5)

    attack_passes = [inputs for training, inputs in seen if not training]
    trained_on = [inputs for training, inputs in seen if training]
    assert len(attack_passes) == 3 and len(trained_on) == 1  # attack in eval mode, then one step
    x_adv = trained_on[0]
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and (x_adv - x).abs().max() > 0.05
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert out["loss"].item() > torch.nn.functional.cross_entropy(model(x), y).item()
    assert model.training  # the regime restored the train mode


@pytest.mark.parametrize("ramp, progress", [("constant(warmup=0.5)", 0.25), ("linear", 0.9),
                                            ("cosine", 0.5)])
def test_the_epsilon_ramp_scales_eps_by_its_schedule_at_the_given_progress(ramp, progress):
    regime = REGIMES.build(f"pgd_at(eps=0.2, ramp={ramp!r})")
    expected = 0.2 * schedules.parse(ramp)(progress)
    assert regime.eps_at(progress) == pytest.approx(expected)
    assert regime.eps_at(1.0) == pytest.approx(0.2 * schedules.parse(ramp)(1.0))
    used = []
    regime.perturb = lambda model, x, y, eps: used.append(eps) or x
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    regime.losses(model, torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0]), progress=progress)
    assert used == [pytest.approx(expected)]
    assert REGIMES.build("fgsm_rs(eps=0.2, ramp='constant(warmup=0.5)')").eps_at(0.25) == \
        pytest.approx(0.1)


@pytest.mark.parametrize("regime, parameter", [
    ("pgd_at(eps=-0.1)", "eps"),
    ("pgd_at(eps=0.1, steps=0)", "steps"),
    ("pgd_at(eps=0.1, norm=l3)", "norm"),
    ("pgd_at(eps=0.1, stepz=3)", "stepz"),
    ("pgd_at(steps=3)", "eps"),
    ("fgsm_rs(eps=0.1, step=0)", "step"),
    ("fgsm_rs(eps=0.1, start=clipped)", "start must be one of box, ball"),
    ("trades(eps=0.1, beta=-1)", "beta"),
])
def test_bad_regime_parameters_are_a_one_line_config_error_naming_them(regime, parameter):
    with pytest.raises(config_module.ConfigError) as caught:
        experiment.from_mapping(tiny(regimes=["standard", regime]))
    message = str(caught.value)
    assert message.startswith("regimes[1]: regime ") and "\n" not in message
    assert parameter in message


def test_a_bad_ramp_schedule_is_a_one_line_config_error():
    with pytest.raises(config_module.ConfigError) as caught:
        experiment.from_mapping(tiny(regimes=["pgd_at(eps=0.1, ramp='cosinus')"]))
    message = str(caught.value)
    assert message.startswith("regimes[0]: ") and "\n" not in message
    assert "schedule 'cosinus' is unknown" in message


@pytest.fixture(scope="module")
def probed():
    return train({"schedules": ["constant"], "regimes": ["standard", "pgd_at(eps=0.15, steps=3)"],
                  "train": {"epochs": 4},
                  "evaluation": {"attack": "pgd(eps=0.15, steps=5)", "subset": 30,
                                 "final": ["pgd(eps=0.15, steps=10)"]}},
                 probes=True)


def test_the_robustness_probe_records_the_monitor_trajectory_under_monitor_names(probed):
    for summary, rows in probed.values():
        assert {"monitor_robust_acc", "monitor_fgsm_acc"} <= set(rows[0])
        assert not {"robust_acc", "fgsm_acc", "val_robust_acc"} & set(rows[0])
        monitor = [row["monitor_robust_acc"] for row in rows]
        assert summary["monitor_robust_acc"] == monitor[-1]
        assert summary["monitor_examples"] == 30
        assert 1 <= summary["best_robust_epoch"] <= len(rows)
        assert summary["monitor_robust_acc_best"] == monitor[summary["best_robust_epoch"] - 1]
        assert isinstance(summary["catastrophic_overfitting"], bool)
        for row in rows:
            assert row["monitor_robust_acc"] <= row["monitor_fgsm_acc"] + 0.05
    # what the monitor is for: it tells adversarial training from standard training
    standard = probed["standard"][0]["monitor_robust_acc_best"]
    adversarial = probed["pgd_at(eps=0.15, steps=3)"][0]["monitor_robust_acc_best"]
    assert adversarial > standard


def test_adversarial_training_selects_its_best_epoch_by_robust_validation_accuracy(probed):
    """Issue 24: evaluation.select defaults to "auto": robust validation accuracy chooses the
    best epoch under an adversarial regime and is recorded in the summary (the report's LR
    choice reads it there); standard training keeps clean validation accuracy."""
    summary, rows = probed["pgd_at(eps=0.15, steps=3)"]
    assert summary["best_epoch_by"] == "monitor_val_robust_acc"
    assert summary["monitor_val_robust_acc"] == rows[-1]["monitor_val_robust_acc"]
    robust = [row["monitor_val_robust_acc"] for row in rows]
    assert summary["best_robust_epoch"] == summary["best_epoch"] == robust.index(max(robust)) + 1
    standard, standard_rows = probed["standard"]
    assert standard["best_epoch_by"] == "val_acc" and "monitor_val_robust_acc" not in standard
    assert "monitor_val_robust_acc" not in standard_rows[0]
    clean = [row["val_acc"] for row in standard_rows]
    assert standard["best_epoch"] == clean.index(max(clean)) + 1
    for record, _ in probed.values():  # the worst class of the cascade's per-class numbers
        assert record["robust_worst_class_acc"] == min(record["robust_per_class_acc"])


def test_robust_acc_is_one_headline_the_final_cascade_on_the_whole_test_set(probed):
    """Issue 12: the 200-example PGD-10 monitor (74.8%) and the full-test cascade (78.8%)
    were both called robust accuracy; now ``robust_acc`` is the cascade alone."""
    for summary, _ in probed.values():
        assert summary["robust_acc"] == summary["cascade"]["pgd(eps=0.15, steps=10)"]
        assert summary["robust_eval"] == "cascade pgd(eps=0.15, steps=10)"
        assert summary["robust_examples"] > summary["monitor_examples"]  # the whole test set
        assert summary["robust_gap"] == pytest.approx(summary["robust_acc_best"]
                                                      - summary["robust_acc"])
        assert "cascade_robust_acc" not in summary and "attack" not in summary


def test_without_a_final_cascade_the_headline_is_the_monitor_and_says_so():
    ((summary, _),) = train({"schedules": ["constant"], "train": {"epochs": 2},
                             "evaluation": {"attack": "pgd(eps=0.1, steps=2)", "subset": 30}},
                            probes=True).values()
    assert summary["robust_acc"] == summary["monitor_robust_acc"]
    assert summary["robust_eval"] == "monitor pgd(eps=0.1, steps=2)"
    assert summary["robust_examples"] == 30


def test_pgd_at_is_more_robust_than_standard_training(probed):
    standard, adversarial = probed["standard"][0], probed["pgd_at(eps=0.15, steps=3)"][0]
    assert adversarial["robust_acc"] > standard["robust_acc"] + 0.1  # 0.63 vs 0.40 here


def test_the_report_section_shows_monitor_trajectories_gaps_and_warnings(probed):
    summaries = [dict(summary) for summary, _ in probed.values()]
    rows = [row for _, trial_rows in probed.values() for row in trial_rows]
    summaries[0]["warnings"] = ["PGD with eps=0 changed its input"]
    document = Document("t")
    robustness_section(document, summaries, rows)
    kinds = {kind: [value for k, value in document.blocks if k == kind]
             for kind in ("heading", "plot", "table")}
    assert kinds["heading"][0] == "Adversarial robustness"
    # the monitor has its own figure, axis and caption; the headline is never on that axis
    assert [plot.name for plot in kinds["plot"]] == ["monitor_robust_accuracy_per_epoch"]
    plot = kinds["plot"][0]
    assert "Monitor (pgd(eps=0.15, steps=5) on 30 test examples)" in plot.caption
    axes = plot.figure.axes
    assert len(axes) == 2 and {a.get_ylabel() for a in axes} == {"monitor robust accuracy %"}
    gaps, warnings = kinds["table"]
    assert "robust gap (points)" in gaps.header and "monitor final %" in gaps.header
    assert len(gaps.rows) == 2
    assert gaps.rows[0][1] == "pgd_at(eps=0.15, steps=3)"  # ranked by robust accuracy
    assert warnings.rows == [[summaries[0]["trial"], "constant", "standard", "0",
                              "PGD with eps=0 changed its input"]]


def test_the_report_section_skips_itself_without_robust_accuracy(probed):
    document = Document("t")
    robustness_section(document, [{k: v for k, v in s.items() if k != "robust_acc"}
                                  for s, _ in probed.values()], [])
    assert document.blocks == []


@pytest.mark.parametrize("robust, fgsm, expected", [
    ([0.30, 0.40, 0.45, 0.05], [0.40, 0.50, 0.55, 0.90], True),  # PGD collapses, FGSM rises
    ([0.30, 0.45, 0.40, 0.36], [0.40, 0.55, 0.50, 0.48], False),  # robust overfitting, no collapse
    ([0.40, 0.45, 0.02], [0.50, 0.55, 0.05], False),  # both collapse: divergence, not CO
    ([0.05, 0.01, 0.00], [0.50, 0.80, 0.90], True),  # overfitted from the start: FGSM-only robust
    # wong_fgsm_rs_mnist (start=ball) seeds: a warm-up dip recovered from, and a late collapse
    ([0.13, 0.06, 0.315, 0.60, 0.86, 0.875], [0.60, 0.695, 0.685, 0.76, 0.895, 0.925], False),
    ([0.04, 0.07, 0.36, 0.68, 0.845, 0.81, 0.62, 0.43, 0.415],
     [0.545, 0.565, 0.825, 0.845, 0.92, 0.965, 0.90, 0.915, 0.93], True),
    ([0.02, 0.035, 0.01], [0.30, 0.85, 0.96], True),  # wong_fgsm_rs_mnist seed 2 with the box start
    ([0.00, 0.00, 0.01], [0.02, 0.05, 0.03], False),  # never robust to either: standard training
    ([0.05, 0.06, 0.08], [0.30, 0.40, 0.45], False),  # weak against PGD, no single-step masking
    ([0.40, 0.42, 0.41, 0.44], [0.50, 0.52, 0.51, 0.53], False),  # healthy
    ([], [], False),
])
def test_catastrophic_overfitting_on_constructed_trajectories(robust, fgsm, expected):
    assert catastrophic_overfitting(robust, fgsm) is expected


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    config = copy.deepcopy(TINY)
    config.update(data={"name": "digits", "limit": 300}, schedules=["constant"],
                  train={**config["train"], "epochs": 2})
    out = tmp_path_factory.mktemp("attack") / "run"
    run_dir = run_in_folder(experiment.from_mapping(config), out=out, save_models=True,
                      show_progress=False)
    (path,) = run_dir.glob("trials/*/model.pt")
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, ["attack", *[str(a) for a in args]])  # errors -> exit codes


def test_attack_prints_the_cascade_as_a_table_and_as_json(saved_model):
    specs = ["fgsm(eps=0.1)", "pgd(eps=0.1, steps=10, restarts=2)"]
    common = [saved_model, "--data", "digits", "--limit", "120", "--attack", specs[0],
              "--attack", specs[1], "--device", "cpu"]
    table = invoke(*common)
    assert table.exit_code == 0, table.output
    assert all(spec in table.output for spec in specs) and "robust acc %" in table.output

    result = invoke(*common, "--json", "--split", "val", "--batch-size", "50")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["examples"] == 120 and record["split"] == "val"
    accuracies = [record["clean_acc"]] + [step["robust_acc"] for step in record["steps"]]
    assert [step["attack"] for step in record["steps"]] == specs
    assert all(b <= a for a, b in zip(accuracies, accuracies[1:]))
    assert record["robust_acc"] == accuracies[-1] < record["clean_acc"]


@pytest.mark.parametrize("args, words", [
    (["--data", "digits", "--attack", "pgd(epz=0.1)"], "unknown parameter 'epz'"),
    (["--data", "digits", "--attack", "pgd(eps=0.1"], "--attack"),
    (["--data", "digits", "--attack", "teleport"], "attack 'teleport' is unknown"),
    (["--data", "imagenet", "--attack", "pgd"], "trained on 'digits', not 'imagenet'"),
])
def test_attack_bad_input_is_one_line_and_exit_2(saved_model, args, words):
    result = invoke(saved_model, *args)
    assert result.exit_code == 2
    message = result.output.strip()
    assert message.startswith("robustlr: error: ") and "\n" not in message
    assert words in message


def test_attack_on_data_of_another_shape_is_exit_2(tmp_path):
    path = tmp_path / "six.pt"
    model = models.build("mlp(hidden=[4])", input_shape=(1, 6, 6), num_classes=10,
                         mean=[0.5], std=[0.2])
    models.save(model, path, spec="mlp(hidden=[4])", input_shape=(1, 6, 6), num_classes=10,
                mean=[0.5], std=[0.2])
    result = invoke(path, "--data", "digits", "--attack", "pgd")
    assert result.exit_code == 2 and "the model expects (1, 6, 6)" in result.output


def test_attack_on_a_missing_or_foreign_file_is_exit_2(tmp_path):
    missing = invoke(tmp_path / "nope.pt", "--data", "digits", "--attack", "pgd")
    assert missing.exit_code == 2 and "no such file" in missing.output
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    result = invoke(foreign, "--data", "digits", "--attack", "pgd")
    assert result.exit_code == 2 and "not a robustlr model checkpoint" in result.output


def test_attack_scores_the_split_the_checkpoint_records_not_the_default(tmp_path):
    """Issue 12: a model trained with another split_seed/test_fraction was scored on the
    default split, whose test examples overlap its training set."""
    config = copy.deepcopy(TINY)
    config.update(data={"name": "digits", "split_seed": 3, "test_fraction": 0.3, "limit": 200},
                  schedules=["constant"], train={**config["train"], "epochs": 1})
    run_dir = run_in_folder(experiment.from_mapping(config), out=tmp_path / "run",
                      save_models=True, show_progress=False)
    (path,) = run_dir.glob("trials/*/model.pt")
    recorded = models.read_metadata(path)["extra"]["data"]
    assert recorded["config"]["split_seed"] == 3 and recorded["config"]["test_fraction"] == 0.3
    result = invoke(path, "--data", "digits", "--attack", "fgsm(eps=0.05)", "--json",
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    its_split = data.load("digits", split="test", split_seed=3, test_fraction=0.3)
    assert json.loads(result.stdout)["examples"] == len(its_split[1]) == 539  # default: 359


def test_attack_refuses_a_split_that_differs_from_the_recorded_one_in_one_line(saved_model,
                                                                               tmp_path):
    meta = models.read_metadata(saved_model)
    tampered = tmp_path / "tampered.pt"
    extra = {**meta["extra"], "data": {**meta["extra"]["data"], "split_hash": "0" * 16}}
    models.save(models.load(saved_model), tampered, spec=meta["spec"],
                input_shape=meta["input_shape"], num_classes=meta["num_classes"],
                mean=meta["mean"], std=meta["std"], extra=extra)
    result = invoke(tampered, "--data", "digits", "--attack", "pgd")
    message = result.output.strip()
    assert result.exit_code == 2 and "\n" not in message
    assert "not the one the model was trained on" in message


@pytest.mark.slow
def test_acceptance_pgd_at_is_30_points_more_robust_on_digits_at_eps_0_1(tmp_path):
    """Issue 3's acceptance: digits, eps 0.1 L-inf, cnn, one schedule; PGD-20 on the test set.

    Measured (2 shared cores): standard 54.6%, PGD-AT 86.9% robust, clean 99.2%: a thin margin
    (at lr 0.05 the gap was 29.8 points after 15 epochs and 26.4 after 30).
    """
    config = experiment.from_mapping({
        "name": "acceptance", "data": {"name": "digits"}, "model": "cnn",
        "train": {"epochs": 15, "batch_size": 64, "lr": 0.1, "momentum": 0.9,
                  "weight_decay": 5e-4},
        "schedules": ["cosine"], "regimes": ["standard", "pgd_at(eps=0.1, steps=7)"],
        "evaluation": {"attack": "pgd(eps=0.1, steps=20)", "subset": 100,
                       "final": ["pgd(eps=0.1, steps=20)"]}})
    run_dir = run_in_folder(config, out=tmp_path / "run", workers=2, show_progress=False)
    summary = {r["regime"]: r for r in json.loads((run_dir / "summary.json").read_text())}
    standard, adversarial = summary["standard"], summary["pgd_at(eps=0.1, steps=7)"]
    assert adversarial["clean_acc"] >= 0.90
    assert adversarial["robust_acc"] >= standard["robust_acc"] + 0.30  # the final cascade
