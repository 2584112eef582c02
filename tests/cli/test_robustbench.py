"""RobustBench interop: ``robustlr export --format robustbench`` writes loadable entries with
every field the leaderboard carries, and ``robustlr attack`` evaluates a state dict trained
elsewhere (architecture by name or by sidecar) exactly as the model itself scores."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from click.testing import CliRunner

from robustlr import data, models
from robustlr.attacks import PGD, cascade
from robustlr.cli import main

FIELDS = {"name", "dataset", "threat_model", "norm", "eps", "clean_acc", "autoattack_acc",
          "autoattack_version", "number_evaluated_examples", "architecture", "training_regime",
          "schedule", "additional_data", "number_forward_passes"}


def record(trial, schedule, autoattack_acc, **extra):
    return {"trial": trial, "schedule": schedule, "regime": "pgd_at(eps=0.1)", "lr_scale": 1.0,
            "seed": 0, "status": "ok", "clean_acc": 0.95, "robust_examples": 200,
            "final_attacks": ["pgd(eps=0.1, steps=20)", "autoattack(eps=0.1, norm=linf)"],
            "autoattack_acc": autoattack_acc, "autoattack_apgd_ce_acc": autoattack_acc + 0.01,
            "autoattack_square_acc": autoattack_acc, "robust_eval": "cascade ...", **extra}


def write_run(tmp_path, records):
    (tmp_path / "summary.json").write_text(json.dumps(records))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"data": {"name": "digits"},
                                                          "model": {"name": "cnn", "width": 16}}))
    return tmp_path


def test_export_writes_the_best_trial_per_schedule(tmp_path):
    run = write_run(tmp_path, [record("a", "constant", 0.70), record("b", "constant", 0.75),
                               record("c", "cosine", 0.60),
                               {"trial": "d", "schedule": "linear", "status": "ok"}])
    result = CliRunner().invoke(main, ["export", str(run), "--format", "robustbench"])
    assert result.exit_code == 0, result.output
    entries = json.loads((run / "robustbench.json").read_text())
    assert {e["trial"] for e in entries} == {"b", "c"}
    best = next(e for e in entries if e["trial"] == "b")
    assert FIELDS <= set(best)
    assert best["autoattack_acc"] == 75.0 and best["clean_acc"] == 95.0 and best["eps"] == 0.1
    assert best["threat_model"] == "Linf" and best["autoattack_version"] == "standard"
    assert best["architecture"] == "cnn(width=16)" and best["number_evaluated_examples"] == 200
    assert best["autoattack_stages"] == {"apgd_ce": 76.0, "square": 75.0}
    every = CliRunner().invoke(main, ["export", str(run), "--format", "robustbench", "--select", "all",
                                      "--out", str(tmp_path / "all.json")])
    assert every.exit_code == 0 and len(json.loads((tmp_path / "all.json").read_text())) == 3


def test_export_without_autoattack_is_a_one_line_error(tmp_path):
    run = write_run(tmp_path, [{"trial": "d", "schedule": "linear", "status": "ok",
                                "final_attacks": ["pgd(eps=0.1)"]}])
    result = CliRunner().invoke(main, ["export", str(run), "--format", "robustbench"])
    assert result.exit_code == 2 and "autoattack" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """A cnn 'trained elsewhere': a bare state dict, wrapped and prefixed as DataParallel saves it."""
    torch.manual_seed(0)
    model = models.build("cnn(width=8)", input_shape=(1, 8, 8), num_classes=10, mean=[0.3], std=[0.4])
    folder = tmp_path_factory.mktemp("foreign")
    path = folder / "model.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return model.eval(), path


def score(args):
    result = CliRunner().invoke(main, ["attack", *args, "--data", "digits", "--limit", "30",
                                       "--attack", "pgd(eps=0.1, steps=3)", "--device", "cpu", "--json"])
    return result


def test_attack_evaluates_a_foreign_state_dict(foreign):
    model, path = foreign
    result = score([str(path), "--arch", "cnn(width=8)", "--input-shape", "1,8,8"])
    assert result.exit_code == 0, result.output
    reported = json.loads(result.output)
    x, y = data.load("digits", split="test", seed=0)[:2]
    expected = cascade(model, x[:30], y[:30], [("pgd", PGD(eps=0.1, steps=3))])
    assert reported["clean_acc"] == expected.clean_acc
    assert reported["robust_acc"] == expected.robust_acc


def test_attack_reads_a_sidecar_and_rejects_a_wrong_architecture(foreign, tmp_path):
    model, path = foreign
    copy = tmp_path / "net.pt"
    copy.write_bytes(path.read_bytes())
    (tmp_path / "net.json").write_text(json.dumps({"arch": "cnn(width=8)", "input_shape": [1, 8, 8]}))
    assert score([str(copy)]).exit_code == 0
    wrong = score([str(path), "--arch", "mlp", "--input-shape", "1,8,8"])
    assert wrong.exit_code == 2 and "does not fit --arch mlp" in wrong.output
