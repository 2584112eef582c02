"""The user's own data: .npz files (layouts, dtypes, bad files), dataset factories (tuples,
mappings, PIL images, a val split), the in-memory and streamed paths (same examples, seeded
order, chosen by size), and bad input as one line, exit 2, before any run folder exists."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import tiny, write_config

from robustlr import experiment
from robustlr.cli import main
from robustlr.data import DataConfig, DataError, prepare, streaming
from robustlr.training.setup import prepare as prepare_trial

FACTORIES = '''
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, TensorDataset

def _tensors(n, classes=4, seed=0, shape=(3, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = (y.float()[:, None, None, None] / classes + 0.2 * torch.rand(n, *shape, generator=g)).clamp(0, 1)
    return TensorDataset((x * 255).to(torch.uint8), y)

def pair(n=120):
    return _tensors(n), _tensors(40, seed=1)

def triple():
    return _tensors(100), _tensors(40, seed=1), _tensors(20, seed=2)

def mapping():
    return {"train": _tensors(100), "test": _tensors(40, seed=1)}

class Pictures(Dataset):
    """PIL images, as torchvision's datasets return them."""
    def __init__(self, n, seed):
        self.items = [(Image.fromarray(np.asarray(x.permute(1, 2, 0))), int(y)) for x, y in _tensors(n, seed=seed)]
        self.targets = [y for _, y in self.items]
    def __len__(self):
        return len(self.items)
    def __getitem__(self, i):
        return self.items[i]

def pictures():
    return Pictures(80, 0), Pictures(20, 1)

def not_datasets():
    return 3

def only_train():
    return {"train": _tensors(10)}
'''


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "userdata.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "userdata"
    import sys

    sys.modules.pop("userdata", None)


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_npz_layouts_and_dtypes_give_the_same_inputs(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 6, 6, 3), dtype=np.uint8)
    y = np.arange(30) % 3
    bundles = [prepare(DataConfig(name="npz", path=_npz(tmp_path / f"{i}.npz", x=x, y=y)), seed=0)
               for i, x in enumerate([images, images.transpose(0, 3, 1, 2),
                                      images.astype(np.float32) / 255])]
    for bundle in bundles:
        assert bundle.input_shape == (3, 6, 6) and bundle.num_classes == 3
        assert torch.allclose(bundle.train[0], bundles[0].train[0])
    assert bundles[0].train[0].max() <= 1.0
    signals = prepare(DataConfig(name="npz", path=_npz(tmp_path / "s.npz", x=rng.random((30, 40)), y=y)), seed=0)
    assert signals.input_shape == (1, 40)


def test_npz_with_its_own_test_split_keeps_it_whole(tmp_path):
    x, y = np.zeros((50, 1, 4, 4), np.uint8), np.arange(50) % 2
    path = _npz(tmp_path / "t.npz", x=x, y=y, x_test=x[:7], y_test=y[:7])
    bundle = prepare(DataConfig(name="npz", path=path, val_fraction=0.2), seed=0)
    assert len(bundle.test[1]) == 7 and len(bundle.val[1]) == 10 and len(bundle.train[1]) == 40


@pytest.mark.parametrize("arrays, words", [
    ({"inputs": np.zeros((4, 2)), "y": np.zeros(4, int)}, ["no array 'x'", "inputs, y"]),
    ({"x": np.zeros((4, 2))}, ["no array 'y'"]),
    ({"x": np.full((4, 2), 2.0), "y": np.zeros(4, int)}, ["outside [0, 1]"]),
    ({"x": np.zeros((4, 2)), "y": np.zeros(3, int)}, ["4 integer labels"]),
    ({"x": np.zeros((4, 2)), "y": np.zeros(4, int), "x_test": np.zeros((2, 2))}, ["x_test and y_test"]),
])
def test_a_bad_npz_names_the_field_and_the_cause(tmp_path, arrays, words):
    with pytest.raises(DataError) as error:
        prepare(DataConfig(name="npz", path=_npz(tmp_path / "bad.npz", **arrays)), seed=0)
    assert str(error.value).startswith("data.path:")
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize("factory, sizes", [("pair", (96, 24, 40)), ("triple", (100, 20, 40)),
                                            ("mapping", (80, 20, 40)), ("pictures", (64, 16, 20))])
def test_dataset_factories_in_memory(factories, factory, sizes):
    bundle = prepare(DataConfig(name=f"userdata:{factory}", val_fraction=0.2), seed=0)
    assert tuple(len(split[1]) for split in (bundle.train, bundle.val, bundle.test)) == sizes
    assert bundle.input_shape == (3, 8, 8) and bundle.num_classes == 4 and not bundle.streamed
    assert bundle.train[0].dtype == torch.float32 and 0 <= bundle.train[0].min() <= bundle.train[0].max() <= 1


def test_factory_options_are_passed(factories):
    bundle = prepare(DataConfig(name="userdata:pair", options={"n": 60}, val_fraction=0.5), seed=0)
    assert len(bundle.train[1]) + len(bundle.val[1]) == 60


def test_streamed_and_in_memory_paths_hold_the_same_examples(factories):
    memory = prepare(DataConfig(name="userdata:pair", stream=False), seed=0)
    streamed = prepare(DataConfig(name="userdata:pair", stream=True, limit=50), seed=0)
    full = prepare(DataConfig(name="userdata:pair", stream=True), seed=0)
    assert streamed.streamed and len(streamed.train_stream) == 50 and len(streamed.train[0]) == 0
    x, y = streaming.materialize(full.train_stream)
    assert torch.equal(x, memory.train[0]) and torch.equal(y, memory.train[1])
    assert torch.equal(full.test[0], memory.test[0]) and torch.equal(full.val[0], memory.val[0])
    assert np.allclose(full.mean, memory.mean, atol=1e-6)  # 96 examples: the sample is all of them


def test_auto_streams_above_the_size_threshold(factories):
    small = prepare(DataConfig(name="userdata:pair", stream_above_gb=1.0), seed=0)
    large = prepare(DataConfig(name="userdata:pair", stream_above_gb=1e-6), seed=0)
    assert not small.streamed and large.streamed


def user_tiny(**overrides):
    """helpers.tiny without its synthetic-data options (they apply only to 'synthetic')."""
    config = tiny(**overrides)
    if config["data"]["name"] != "synthetic":
        config["data"].pop("synthetic")
    return config


def _streamed_batches(seed, workers=0):
    config = experiment.from_mapping(user_tiny(
        data={"name": "userdata:pair", "stream": True, "workers": workers,
              "augment": ["random_crop(padding=2)", "hflip"]},
        model={"name": "cnn", "width": 4, "hidden": 8}))
    bundle = prepare(config.data, seed=seed)
    setup = prepare_trial(config, bundle, regime_spec="standard", seed=seed, lr=0.1,
                          total_steps=lambda batches: batches).setup
    return [(x.clone(), y.clone()) for x, y in setup.loader]


def test_the_streamed_order_and_augmentation_follow_the_seed(factories):
    first, again, other = _streamed_batches(0), _streamed_batches(0), _streamed_batches(1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][1], other[0][1])
    assert all(0 <= x.min() and x.max() <= 1 and x.shape[1:] == (3, 8, 8) for x, _ in first)
    with_workers = _streamed_batches(0, workers=2)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(with_workers, _streamed_batches(0, workers=2)))


def _cli_run(tmp_path, config):
    out = tmp_path / "run"
    path = write_config(tmp_path / "c.yaml", config)
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(out), "--no-progress",
                                       "--workers", "1"])
    return result, out


@pytest.mark.parametrize("change, words", [
    ({"data": {"name": "npz", "path": "NPZ_NO_Y"}}, ["data: data.path:", "no array 'y'"]),
    ({"data": {"name": "userdata:missing"}}, ["data.name", "no attribute 'missing'"]),
    ({"data": {"name": "nosuchpkg_xyz.sets:make"}}, ["data.name", "cannot import module"]),
    ({"data": {"name": "userdata:not_datasets"}}, ["must return (train, test)"]),
    ({"data": {"name": "userdata:only_train"}}, ["no test dataset"]),
    ({"data": {"name": "userdata:pair"}, "model": {"name": "mlp", "hidden": [4]},
      "train": {"epochs": 1}, "FORCE_CLASSES": True}, ["model:", "shape (3,)", "has 4 classes"]),
    ({"data": {"name": "npz", "path": "NPZ_SIGNAL", "augment": ["hflip"]}},
     ["data.augment[0]", "hflip needs image inputs"]),
    ({"data": {"name": "userdata:pair", "stream": True}, "regimes": ["dp(noise_multiplier=1.0)"]},
     ["data.stream:", "regime 'dp'", "data.stream: false"]),
    ({"model": "nosuchmodule_xyz:Net"}, ["model: model 'nosuchmodule_xyz:Net': cannot import"]),
])
def test_bad_user_input_is_one_line_exit_2_and_no_run_folder(tmp_path, factories, change, words):
    config = user_tiny(**{k: v for k, v in change.items() if k != "FORCE_CLASSES"})
    data = config["data"]
    if data.get("path") == "NPZ_NO_Y":
        data["path"] = _npz(tmp_path / "no_y.npz", x=np.zeros((8, 1, 4, 4)))
    if data.get("path") == "NPZ_SIGNAL":
        data["path"] = _npz(tmp_path / "signal.npz", x=np.zeros((20, 9)), y=np.arange(20) % 2)
    if "FORCE_CLASSES" in change:  # a user model with 3 outputs for data with 4 classes
        (tmp_path / "threeout.py").write_text(
            "from torch import nn\ndef net():\n    return nn.Sequential(nn.Flatten(), nn.Linear(192, 3))\n")
        config["model"] = "threeout:net"
    result, out = _cli_run(tmp_path, config)
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert len(message.splitlines()) == 1, message
    for word in words:
        assert word in message
    assert not out.exists()
