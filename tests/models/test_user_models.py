"""The user's own network and data through the whole product: a model factory in a module
outside the package and an .npz file, both written here, through `robustlr run` (standard,
pgd_at, dp and a poisoning grid with a penultimate-feature filter) and `robustlr attack` on
the saved checkpoint; torchvision and timm names; checkpoints of plug-in models."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import write_config

from robustlr import models
from robustlr.attacks.filters.representations import last_linear, penultimate
from robustlr.cli import main
from robustlr.spec import SpecError

USER_MODULE = '''
import math
from torch import nn

class Net(nn.Module):
    """Defines its head *first*, so the last registered Linear is not the head."""
    def __init__(self, num_classes, input_shape, width=16):
        super().__init__()
        self.classify = nn.Linear(width, num_classes)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU())

    def forward(self, x):
        return self.classify(self.body(x))

def not_a_module(num_classes):
    return "a string"

def three_logits():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
'''


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """A module ``usernets`` outside the package, importable as the user's would be."""
    (tmp_path / "usernets.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    yield "usernets"
    import sys

    sys.modules.pop("usernets", None)


def write_npz(path, *, n=200, classes=3, channels_last=True, seed=0):
    """Class-dependent uint8 images (N, 8, 8, 1) with an official test split."""
    rng = np.random.default_rng(seed)

    def draw(count):
        y = rng.integers(0, classes, count)
        centres = np.linspace(40, 215, classes)[y][:, None, None, None]
        x = np.clip(centres + rng.normal(0, 25, (count, 8, 8, 1)), 0, 255).astype(np.uint8)
        return (x if channels_last else x.transpose(0, 3, 1, 2)), y
    x, y = draw(n)
    x_test, y_test = draw(n // 2)
    np.savez(path, x=x, y=y, x_test=x_test, y_test=y_test)
    return path


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _run_user_grid(tmp_path, grids, **data_fields):
    data = write_npz(tmp_path / "mine.npz")
    config = write_config(tmp_path / "c.yaml", {
        "name": "mine", "data": {"name": "npz", "path": str(data), "val_fraction": 0.1,
                                 **data_fields},
        "model": {"name": "usernets:Net", "width": 12},
        "train": {"epochs": 2, "batch_size": 50, "lr": 0.1},
        "schedules": ["constant"], "grids": grids, "filtering": {"epochs": 1}})
    out = tmp_path / "run"
    result = cli("run", config, "--out", out, "--no-progress", "--workers", 1, "--save-models")
    assert result.exit_code == 0, result.output
    summaries = json.loads((out / "summary.json").read_text())
    for summary in summaries:
        assert summary["status"] == "ok" and summary["epochs"] == 2, summary
        assert 0.0 <= summary["clean_acc"] <= 1.0
    return data, out, summaries


def test_user_factory_and_npz_go_through_run_and_attack(tmp_path, user_code):
    data, out, summaries = _run_user_grid(
        tmp_path, [{"regimes": ["standard", "pgd_at(eps=0.05, steps=3)"]}])
    assert [s["regime"].split("(")[0] for s in summaries] == ["standard", "pgd_at"]
    # the checkpoint records the import path and kwargs and loads with weights_only=True
    checkpoint = next(out.glob("trials/*/model.pt"))
    meta = models.read_metadata(checkpoint)
    assert meta["factory"] == "usernets:Net" and meta["kwargs"] == {"width": 12}
    assert set(torch.load(checkpoint, weights_only=True)) == {"metadata", "state_dict"}
    # the checkpoint names the user's factory: refused unless the caller trusts it by name
    refused = cli("attack", checkpoint, "--data", data, "--attack", "pgd(eps=0.05, steps=5)",
                  "--device", "cpu")
    assert refused.exit_code == 2 and "--trust-factory usernets:Net" in refused.output
    attacked = cli("attack", checkpoint, "--data", data, "--attack", "pgd(eps=0.05, steps=5)",
                   "--json", "--device", "cpu", "--trust-factory", "usernets:Net")
    assert attacked.exit_code == 0, attacked.output
    report = json.loads(attacked.output)
    assert report["examples"] == 100
    # the command attacked the saved model on the npz's own test split: its clean accuracy is
    # that model's, recomputed here from the arrays the test wrote
    with np.load(data) as arrays:
        x_test = torch.from_numpy(arrays["x_test"]).permute(0, 3, 1, 2).float() / 255
        y_test = torch.from_numpy(arrays["y_test"])
    model = models.load(checkpoint, trust=["usernets:Net"]).eval()
    with torch.no_grad():
        clean = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert report["clean_acc"] == pytest.approx(clean, abs=1e-6)
    assert report["robust_acc"] < report["clean_acc"]  # PGD at eps 0.05 flips some points


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_user_factory_and_npz_under_dp_and_a_filtered_backdoor(tmp_path, user_code):
    _, _, summaries = _run_user_grid(tmp_path, [
        {"regimes": ["dp(noise_multiplier=0.5, max_grad_norm=1.0)"]},
        {"regimes": ["standard"], "poisoning": ["badnets(rate=0.1, target=0, size=2)"],
         "filter": ["spectral"]}], mean=[0.5], std=[0.3])  # public: user data has no default
    dp, poisoned = summaries
    assert dp["epsilon"] > 0
    assert 0.0 <= poisoned["filter_recall"] <= 1.0  # penultimate features of the user's head


def test_the_plugged_head_is_the_logits_layer_not_the_last_registered(user_code):
    model = models.build("usernets:Net(width=6)", input_shape=(1, 4, 4), num_classes=3,
                         mean=[0.5], std=[0.2])
    assert model.head is model.net.classify and last_linear(model) is model.net.classify
    assert penultimate(model, torch.rand(5, 1, 4, 4)).shape == (5, 6)


def test_plugged_checkpoint_round_trip_and_normalize_off(tmp_path, user_code):
    spec = {"name": "usernets:Net", "width": 5, "normalize": False}
    model = models.build(spec, input_shape=(1, 4, 4), num_classes=3, mean=[0.5], std=[0.2])
    assert isinstance(model.normalize, torch.nn.Identity)
    models.save(model, tmp_path / "m.pt", spec=spec, input_shape=(1, 4, 4), num_classes=3,
                mean=[0.5], std=[0.2])
    x = torch.rand(4, 1, 4, 4)
    assert torch.equal(models.load(tmp_path / "m.pt", trust=["usernets:Net"])(x), model.eval()(x))
    assert models.read_metadata(tmp_path / "m.pt")["kwargs"] == {"width": 5, "normalize": False}


@pytest.mark.parametrize("spec, words", [
    ("nosuchmodule_xyz:Net", ["cannot import module 'nosuchmodule_xyz'", "PYTHONPATH"]),
    ("usernets:Missing", ["has no attribute 'Missing'"]),
    ("usernets:not_a_module", ["returned str, not a torch.nn.Module"]),
    ("usernets:three_logits", ["(3,)", "10 classes"]),
    ("usernets:Net(depth=3)", ["unknown parameter 'depth'"]),
    ("torchvision:nosuchnet", ["torchvision has no model 'nosuchnet'"]),
])
def test_bad_plugins_name_the_cause(user_code, spec, words):
    with pytest.raises(SpecError) as error:
        models.MODELS.check(spec)
        models.build(spec, input_shape=(1, 8, 8), num_classes=10, mean=[0.5], std=[0.2])
    for word in words:
        assert word in str(error.value)


def test_torchvision_with_the_small_input_stem():
    model = models.build("torchvision:resnet18(small_input=true)", input_shape=(3, 32, 32),
                         num_classes=10, mean=[0.5] * 3, std=[0.2] * 3)
    assert model.net.conv1.stride == (1, 1) and isinstance(model.net.maxpool, torch.nn.Identity)
    assert model.head is model.net.fc
    assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_timm_model_at_small_input():
    pytest.importorskip("timm")
    spec = "timm:vit_tiny_patch16_224(img_size=16, patch_size=4, depth=2)"
    model = models.build(spec, input_shape=(3, 16, 16), num_classes=4, mean=[0.5] * 3, std=[0.2] * 3)
    assert model.eval()(torch.rand(2, 3, 16, 16)).shape == (2, 4)
    assert model.head is model.net.head and penultimate(model, torch.rand(3, 3, 16, 16)).shape == (3, 192)
