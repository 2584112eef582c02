"""The command line: bad input exits 2 with one line and no folder; kill -9 then --resume
finishes the grid with every trial and epoch exactly once; reports rebuild."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import kill_when_frozen, tiny, write_config

from robustlr.cli import main


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("change, field", [
    ({"trian": {"epochs": 1}}, "trian: unknown key"),
    ({"train": {"epochs": 0}}, "train.epochs:"),
    ({"train": {"optimizer": "adagrad"}}, "train.optimizer:"),
    ({"schedules": ["cosine(warmpu=0.1)"]}, "schedules[0]: schedule 'cosine': unknown parameter 'warmpu'"),
    ({"schedules": ["constant", "sgdr"]}, "schedules[1]: schedule 'sgdr' is unknown; allowed:"),
    ({"regimes": ["adversarial_magic"]}, "regimes[0]: regime 'adversarial_magic' is unknown"),
    ({"lr_scales": [1.0, -2.0]}, "lr_scales: every LR scale must be > 0"),
    ({"model": {"name": "mlp", "depth": 3}}, "model: model 'mlp': unknown parameter 'depth'"),
    ({"data": {"name": "imagenet"}}, "data.name:"),
])
def test_a_bad_config_is_one_line_exit_2_and_no_run_folder(tmp_path, change, field):
    config = write_config(tmp_path / "bad.yaml", tiny(**change))
    out = tmp_path / "run"
    result = cli("run", str(config), "--out", str(out), "--no-progress")
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert message.startswith("robustlr: error: ") and "\n" not in message
    assert field in message
    assert not out.exists()


def test_missing_config_file_and_non_yaml_are_one_line_errors(tmp_path):
    assert "no such file" in cli("run", str(tmp_path / "nope.yaml")).output
    broken = tmp_path / "broken.yaml"
    broken.write_text("schedules: [constant\n")
    result = cli("run", str(broken), "--out", str(tmp_path / "x"))
    assert result.exit_code == 2 and "not valid YAML" in result.output


def test_an_existing_folder_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = cli("run", str(write_config(tmp_path / "c.yaml", tiny())), "--out", str(out))
    assert result.exit_code == 2 and "--resume" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_resume_of_a_non_run_folder_is_an_error(tmp_path):
    result = cli("run", "--resume", str(tmp_path))
    assert result.exit_code == 2 and "not a robustlr run folder" in result.output


def test_schedules_show_prints_the_multiplier_per_step_as_csv():
    result = cli("schedules", "show", "step(milestones=[0.5], gamma=0.1)", "--steps", "4")
    assert result.exit_code == 0
    assert result.output.splitlines() == ["step,progress,multiplier", "0,0,1", "1,0.25,1",
                                          "2,0.5,0.1", "3,0.75,0.1"]
    bad = cli("schedules", "show", "step(gamma=7)")
    assert bad.exit_code == 2 and "gamma" in bad.output


def test_schedules_lists_every_schedule_and_plots(tmp_path):
    result = cli("schedules", "--plot", str(tmp_path / "all.png"))
    assert result.exit_code == 0
    for name in ("constant", "step", "cosine", "onecycle", "cyclic", "wsd", "plateau", "schedule_free"):
        assert f"\n{name}(" in "\n" + result.output
    assert (tmp_path / "all.png").stat().st_size > 1000


def _trial_rows(database: Path) -> tuple[list[tuple], list[tuple]]:
    with sqlite3.connect(database) as db:
        trials = db.execute("SELECT trial, status FROM trials").fetchall()
        epochs = db.execute("SELECT trial, epoch FROM epochs").fetchall()
    return trials, epochs


def _running_with_an_epoch(database: Path) -> bool:
    if not database.exists():
        return False
    try:
        with sqlite3.connect(database, timeout=1) as db:
            return db.execute("SELECT t.trial FROM trials t JOIN epochs e USING (trial) "
                              "WHERE t.status = 'running' GROUP BY t.trial "
                              "HAVING COUNT(*) < 4 LIMIT 1").fetchone() is not None
    except sqlite3.Error:
        return False


def test_kill_9_then_resume_finishes_every_trial_exactly_once(tmp_path):
    config = tiny(schedules=["constant", "cosine", "linear", "exponential"],
                  train={"epochs": 4}, data={"synthetic": {"num_examples": 900,
                                                           "num_classes": 3, "shape": [1, 6, 6]}})
    path = write_config(tmp_path / "grid.yaml", config)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "robustlr", "run", str(path), "--out", str(out),
               "--no-progress"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               start_new_session=True)
    database = out / "results.sqlite"
    # kill on an event, not a deadline raced against the machine's load: the database, seen
    # with the run stopped, shows a trial running with one to three of its four epoch rows
    kill_when_frozen(process, lambda: _running_with_an_epoch(database), limit=900)
    process.wait()
    trials, _ = _trial_rows(database)
    assert any(s == "running" for _, s in trials), "the kill should interrupt a trial"

    result = cli("run", "--resume", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    trials, epochs = _trial_rows(database)
    assert sorted(s for _, s in trials) == ["ok"] * 4
    assert len(epochs) == len(set(epochs)) == 16
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary) == 4 and len({r["trial"] for r in summary}) == 4

    fresh = tmp_path / "fresh"
    assert cli("run", str(path), "--out", str(fresh), "--no-progress").exit_code == 0
    expected = {r["trial"]: r["clean_acc"] for r in json.loads((fresh / "summary.json").read_text())}
    assert {r["trial"]: r["clean_acc"] for r in summary} == expected


def test_report_rebuilds_from_the_database(tmp_path):
    out = tmp_path / "run"
    assert cli("run", str(write_config(tmp_path / "c.yaml", tiny(schedules=["constant"]))),
               "--out", str(out), "--no-progress").exit_code == 0
    names = ("report.html", "report.md", "summary.json", "epochs.csv")
    written = {name: (out / name).read_bytes() for name in names}
    for name in names:
        (out / name).unlink()
    result = cli("report", str(out))
    assert result.exit_code == 0
    for name in names:  # the database alone gives back what the run wrote, byte for byte
        assert (out / name).read_bytes() == written[name], name
    assert cli("report", str(tmp_path)).exit_code == 2


def test_the_saved_config_of_every_shipped_experiment_loads_back(tmp_path):
    from robustlr import config as config_module
    from robustlr import experiment

    experiments = sorted(Path(__file__).parents[2].joinpath("experiments").glob("*.yaml"))
    assert len(experiments) >= 3
    for path in experiments:
        loaded = experiment.load(path)
        saved = tmp_path / f"{path.stem}.yaml"
        saved.write_text(config_module.dump(loaded))
        assert config_module.dump(experiment.load(saved)) == config_module.dump(loaded), path


def test_a_missing_dataset_is_one_line_exit_2_and_no_run_folder(tmp_path):
    raw = tiny()
    raw["data"] = {"name": "mnist", "root": str(tmp_path / "nothing")}
    config = write_config(tmp_path / "mnist.yaml", raw)
    out = tmp_path / "run"
    result = cli("run", str(config), "--out", str(out), "--no-progress")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("robustlr: error: data: dataset 'mnist' not found")
    assert not out.exists()


def test_a_grad_sample_mode_that_cannot_clip_a_layer_exits_2_naming_it_before_any_folder(
        tmp_path, monkeypatch):
    # PReLU has a trainable weight that torch's ExpandedWeights (mode "ew") has no rule for
    (tmp_path / "prelu_nets.py").write_text(
        "from torch import nn\n\n"
        "def net(num_classes, input_shape):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.PReLU(),\n"
        "                         nn.Linear(16, num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = tiny(regimes=["dp(noise_multiplier=1.0, grad_sample_mode=ew)"])
    settings["model"] = {"name": "prelu_nets:net"}
    config = write_config(tmp_path / "c.yaml", settings)
    out = tmp_path / "run"
    result = cli("run", str(config), "--out", str(out), "--no-progress")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "regimes[0]: dp: grad_sample_mode 'ew' does not support layer" in lines[0]
    assert "(PReLU)" in lines[0] and "modes that do: ghost, hooks, functorch" in lines[0]
    assert not out.exists()


def test_full_batch_dp_sgd_runs_and_reports_the_exact_epsilon(tmp_path):
    # issue 28: batch_size = the training set (144 of 240 examples) was refused with
    # "regimes[0]: dp: math domain error"
    settings = tiny(train={"epochs": 2, "batch_size": 144}, schedules=["constant"],
                    regimes=["dp(noise_multiplier=10.0, max_epsilon=20)"])
    out = tmp_path / "run"
    result = cli("run", str(write_config(tmp_path / "c.yaml", settings)), "--out", str(out),
                 "--no-progress")
    assert result.exit_code == 0, result.output
    (record,) = json.loads((out / "summary.json").read_text())
    assert record["sample_rate"] == 1.0 and record["dp_steps"] == 2
    # 2 steps at sigma 10 are mu-GDP, mu = sqrt(2)/10; delta = 0.1/144: epsilon 0.3186492408
    # (the closed form of Balle & Wang 2018, solved by mpmath in 40-digit arithmetic)
    assert 0.3186492408 <= record["epsilon"] <= 0.3186492408 * 1.01
