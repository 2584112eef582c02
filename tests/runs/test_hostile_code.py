"""No code runs from a model file or its sidecar: a checkpoint's metadata or a RobustBench-style
sidecar names a model spec, and a spec naming any importable callable (``os:system``) would be
imported and called on load. Specs read from files resolve only in robustlr's registry and the
torchvision/timm families; a user factory loads only when the caller trusts it by name."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from robustlr import models
from robustlr.plugins import UntrustedFactory
from tests.helpers import cli, one_line


def hostile_specs(target: Path) -> dict[str, str]:
    """Each spec, if resolved and called, creates ``target``."""
    return {
        "os.system": f"os:system(command='touch {target}')",
        "subprocess.getoutput": f"subprocess:getoutput(cmd='touch {target}')",
        "builtins.exec": f"builtins:exec(source='open(\"{target}\", \"w\").close()')",
        "posix.system": f"posix:system(command='touch {target}')",
    }


CASES = list(hostile_specs(Path("x")))


def _checkpoint(path: Path, spec: str) -> Path:
    meta = {"format": 1, "spec": spec, "input_shape": [1, 8, 8], "num_classes": 10,
            "mean": [0.5], "std": [0.2], "extra": None}
    torch.save({"metadata": json.dumps(meta), "state_dict": {}}, path)
    return path


@pytest.mark.parametrize("case", CASES)
def test_a_checkpoint_naming_a_callable_runs_nothing(tmp_path, case):
    target = tmp_path / "pwned"
    checkpoint = _checkpoint(tmp_path / "model.pt", hostile_specs(target)[case])
    with pytest.raises(UntrustedFactory, match="--trust-factory"):
        models.load(checkpoint)
    message = one_line(cli("attack", checkpoint, "--data", "digits", "--attack", "fgsm(eps=0.1)",
                           "--device", "cpu"), 2)
    assert "would import" in message and "--trust-factory" in message
    assert not target.exists()


@pytest.mark.parametrize("case", CASES)
def test_a_sidecar_naming_a_callable_runs_nothing(tmp_path, case):
    target = tmp_path / "pwned"
    torch.save({}, tmp_path / "net.pt")
    (tmp_path / "net.json").write_text(json.dumps({"arch": hostile_specs(target)[case],
                                                   "input_shape": [1, 8, 8]}))
    message = one_line(cli("attack", tmp_path / "net.pt", "--data", "digits", "--attack",
                           "fgsm(eps=0.1)", "--device", "cpu"), 2)
    assert "net.json: arch" in message and "would import" in message
    assert not target.exists()


def test_a_checkpoint_naming_a_data_factory_runs_nothing(tmp_path):
    target = tmp_path / "pwned"
    model = models.build("mlp(hidden=[4])", input_shape=(1, 8, 8), num_classes=10, mean=[0.5],
                         std=[0.2])
    extra = {"data": {"config": {"name": "os:system", "options": {"command": f"touch {target}"}},
                      "seed": 0, "split_hash": "x"}}
    models.save(model, tmp_path / "m.pt", spec="mlp(hidden=[4])", input_shape=(1, 8, 8),
                num_classes=10, mean=[0.5], std=[0.2], extra=extra)
    message = one_line(cli("attack", tmp_path / "m.pt", "--data", "os:system", "--attack",
                           "fgsm(eps=0.1)", "--device", "cpu"), 2)
    assert "the checkpoint's data" in message and "'os:system'" in message
    assert not target.exists()


def test_a_zoo_spec_from_a_file_may_not_fetch_weights(tmp_path):
    checkpoint = _checkpoint(tmp_path / "m.pt", "torchvision:resnet18(weights='DEFAULT')")
    with pytest.raises(UntrustedFactory, match="'weights'"):
        models.load(checkpoint)


@pytest.fixture
def user_factory(tmp_path, monkeypatch):
    (tmp_path / "trusted_nets.py").write_text(textwrap.dedent('''
        from torch import nn

        def Net(num_classes, input_shape):
            return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * 8 * 8, num_classes))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "trusted_nets:Net"
    sys.modules.pop("trusted_nets", None)


def test_a_trusted_user_factory_loads_and_an_untrusted_one_is_named(tmp_path, user_factory):
    model = models.build(user_factory, input_shape=(1, 8, 8), num_classes=10, mean=[0.5], std=[0.2])
    models.save(model, tmp_path / "m.pt", spec=user_factory, input_shape=(1, 8, 8),
                num_classes=10, mean=[0.5], std=[0.2])
    sys.modules.pop("trusted_nets", None)
    with pytest.raises(UntrustedFactory, match="trusted_nets:Net"):
        models.load(tmp_path / "m.pt")
    assert "trusted_nets" not in sys.modules  # refused before the import
    with pytest.raises(UntrustedFactory):
        models.load(tmp_path / "m.pt", trust=["trusted_nets:Other"])
    loaded = models.load(tmp_path / "m.pt", trust=["trusted_nets:Net"])
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(loaded(x), model.eval()(x))
    bad = one_line(cli("attack", tmp_path / "m.pt", "--data", "digits", "--attack", "fgsm(eps=0.1)",
                       "--trust-factory", "not a path"), 2)
    assert "--trust-factory" in bad


@pytest.mark.parametrize("sidecar, words", [
    ("[" * 100_000 + "]" * 100_000, "not JSON"),
    ({"arch": "cnn", "input_shape": [100_000, 100_000, 100_000]}, "input_shape"),
    ({"arch": "cnn", "input_shape": [1, 8, 8], "num_classes": 10**9}, "num_classes"),
    ({"arch": "cnn", "input_shape": [1, 8, 8], "mean": [float("nan")]}, "mean"),
    ({"arch": "cnn", "input_shape": "1,8,8"}, "input_shape"),
    ({"arch": 7, "input_shape": [1, 8, 8]}, "arch"),
    ({"arch": "cnn(width=9**9**9)", "input_shape": [1, 8, 8]}, "exponent"),
    (["arch"], "JSON object"),
])
def test_a_hostile_sidecar_is_one_line_exit_2(tmp_path, sidecar, words):
    torch.save({}, tmp_path / "net.pt")
    text = sidecar if isinstance(sidecar, str) else json.dumps(sidecar)
    (tmp_path / "net.json").write_text(text)
    message = one_line(cli("attack", tmp_path / "net.pt", "--data", "digits", "--attack",
                           "fgsm(eps=0.1)", "--device", "cpu"), 2)
    assert "net.json" in message and words in message
