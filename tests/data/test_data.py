"""robustlr.data: splits, ranges and dtypes; torchvision loaders on files written here."""

from __future__ import annotations

import os
import pickle
import random
import socket
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from robustlr.data import DataBundle, DataConfig, DataError, DatasetNotFoundError, load, prepare, sources


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


def _check_bundle(bundle: DataBundle) -> None:
    for x, y in (bundle.train, bundle.val, bundle.test):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == bundle.input_shape and len(x) == len(y)
        if len(x):
            assert 0.0 <= x.min() and x.max() <= 1.0
            assert 0 <= y.min() and y.max() < bundle.num_classes
    dims = [0] + list(range(2, bundle.train[0].dim()))
    assert len(bundle.mean) == len(bundle.std) == bundle.input_shape[0]
    assert torch.allclose(torch.tensor(bundle.mean), bundle.train[0].double().mean(dims).float(), atol=1e-5)
    assert torch.allclose(torch.tensor(bundle.std), bundle.train[0].double().std(dims, correction=0).float(), atol=1e-5)


def test_digits_default_split():
    bundle = prepare(DataConfig(), seed=0)
    _check_bundle(bundle)
    assert bundle.name == "digits" and bundle.input_shape == (1, 8, 8) and bundle.num_classes == 10
    sizes = [len(split[1]) for split in (bundle.train, bundle.val, bundle.test)]
    assert sizes == [1797 - 270 - 359, 270, 359]
    assert bundle.train[0].max() == 1.0  # /16 scaling reaches the top of the range


def test_split_disjoint_and_fixed_by_split_seed():
    config = DataConfig(name="synthetic")
    a, b = prepare(config, seed=0), prepare(config, seed=7)
    _check_bundle(a)
    train, val, test = (_rows(split[0]) for split in (a.train, a.val, a.test))
    assert len(train) + len(val) + len(test) == 600
    assert not (train & val or train & test or val & test)
    for left, right in zip((a.train, a.val, a.test), (b.train, b.val, b.test)):
        assert torch.equal(left[0], right[0]) and torch.equal(left[1], right[1])
    other = prepare(DataConfig(name="synthetic", split_seed=1), seed=0)
    assert not torch.equal(other.test[0], a.test[0])
    assert _rows(other.test[0]) | _rows(other.train[0]) | _rows(other.val[0]) == train | val | test


def test_stratified():
    bundle = prepare(DataConfig(name="digits", val_fraction=0.2, test_fraction=0.2), seed=0)
    overall = torch.cat([bundle.train[1], bundle.val[1], bundle.test[1]]).bincount() / 1797
    for _, y in (bundle.train, bundle.val, bundle.test):
        assert (y.bincount(minlength=10) / len(y) - overall).abs().max() < 0.01


def test_limit_draws_training_subset_with_trial_seed():
    config = DataConfig(name="digits", limit=100)
    a, b = prepare(config, seed=0), prepare(config, seed=1)
    assert len(a.train[1]) == len(b.train[1]) == 100
    assert not torch.equal(a.train[0], b.train[0])
    assert torch.equal(a.test[0], b.test[0]) and torch.equal(a.val[0], b.val[0])
    assert _rows(a.train[0]) <= _rows(prepare(DataConfig(name="digits"), seed=0).train[0])
    _check_bundle(a)


def test_empty_validation_and_load():
    x, y = load("digits", split="val", val_fraction=0.0)
    assert x.shape == (0, 1, 8, 8) and y.shape == (0,) and y.dtype == torch.int64
    x, y = load("synthetic", split="train", synthetic={"num_examples": 50, "num_classes": 2,
                                                        "shape": [3, 4], "noise": 0.05})
    assert x.shape[1:] == (3, 4) and x.dtype == torch.float32 and set(y.tolist()) == {0, 1}
    with pytest.raises(ValueError, match="split must be one of train, val, test"):
        load("digits", split="validation")


@pytest.mark.parametrize("options, field", [
    ({"name": "svhn"}, "name"), ({"colour": True}, "colour"), ({"val_fraction": 1.0}, "val_fraction"),
    ({"test_fraction": 0.0}, "test_fraction"), ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction"),
    ({"limit": 0}, "limit"), ({"name": "digits", "synthetic": {"num_examples": 10}}, "synthetic"),
    ({"name": "synthetic", "synthetic": {"n": 10}}, "synthetic.n"),
    ({"name": "digits", "download": True}, "download"), ({"image_size": 8}, "image_size"),
])
def test_config_errors_name_the_field(options, field):
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
        DataConfig(**options)


def test_config_is_frozen():
    with pytest.raises(ValidationError):
        DataConfig().name = "mnist"


def test_mnist1d_offline_no_files(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("mnist1d tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.chdir(tmp_path)
    sources._mnist1d.cache_clear()
    np.random.seed(123)
    random.seed(123)
    expected = (np.random.random(), random.random())
    np.random.seed(123)
    random.seed(123)
    bundle = prepare(DataConfig(name="mnist1d"), seed=0)
    assert (np.random.random(), random.random()) == expected  # global generators untouched
    assert os.listdir(tmp_path) == []
    _check_bundle(bundle)
    assert bundle.input_shape == (1, 40) and bundle.num_classes == 10
    assert len(bundle.test[1]) == 1000 and len(bundle.train[1]) + len(bundle.val[1]) == 4000
    assert 0.0 < bundle.train[0].min() and bundle.train[0].max() < 1.0  # the affine map clips nothing
    again = prepare(DataConfig(name="mnist1d"), seed=3)
    assert torch.equal(again.test[0], bundle.test[0])


def _write_idx(path, array: np.ndarray) -> None:
    magic = 0x0800 | array.ndim  # unsigned bytes, then the number of dimensions
    with open(path, "wb") as handle:
        handle.write(struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape))
        handle.write(array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_from_idx_files(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    bundle = prepare(DataConfig(name=name, root=str(tmp_path), val_fraction=0.2), seed=0)
    _check_bundle(bundle)
    assert bundle.input_shape == (1, 28, 28) and bundle.num_classes == 10
    assert [len(s[1]) for s in (bundle.train, bundle.val, bundle.test)] == [48, 12, 20]
    with pytest.warns(UserWarning, match="not stratified"):  # 9 validation examples, 10 classes
        x_test, _ = load(name, root=str(tmp_path))
    assert torch.allclose(x_test[3, 0] * 255, torch.tensor(
        np.fromfile(raw / "t10k-images-idx3-ubyte", dtype=np.uint8, offset=16)
        .reshape(20, 28, 28)[3], dtype=torch.float32))


def test_cifar10_from_pickle_batches(tmp_path):
    folder = tmp_path / sources.CIFAR10_FOLDER
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in sources.CIFAR10_TRAIN + ("test_batch",):
        batch = {"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                 "labels": [int(label) for label in np.arange(20) % 10]}  # plain ints, as CIFAR's
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)
    bundle = prepare(DataConfig(name="cifar10", root=str(tmp_path)), seed=0)
    _check_bundle(bundle)
    assert bundle.input_shape == (3, 32, 32) and len(bundle.test[1]) == 20
    assert len(bundle.train[1]) + len(bundle.val[1]) == 100


def test_imagefolder_of_pngs(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog", "eel"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            pixels = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.png")
    bundle = prepare(DataConfig(name="imagefolder", root=str(tmp_path)), seed=0)
    _check_bundle(bundle)
    assert bundle.input_shape == (3, 6, 6) and bundle.num_classes == 3
    assert [len(s[1]) for s in (bundle.train, bundle.val, bundle.test)] == [20, 4, 6]
    Image.fromarray(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)).save(tmp_path / "eel" / "big.png")
    with pytest.raises(DataError, match="image_size"):
        prepare(DataConfig(name="imagefolder", root=str(tmp_path)), seed=0)
    resized = prepare(DataConfig(name="imagefolder", root=str(tmp_path), image_size=4), seed=0)
    assert resized.input_shape == (3, 4, 4)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_dataset_one_line_error(tmp_path, name):
    with pytest.raises(DatasetNotFoundError) as error:
        load(name, root=str(tmp_path / "nowhere"))
    message = str(error.value)
    assert "\n" not in message and "data.root" in message and "download: true" in message
    assert isinstance(error.value, FileNotFoundError) and isinstance(error.value, ValueError)
    assert not (tmp_path / "nowhere").exists()


def test_a_data_source_is_one_registry_entry_holding_its_facts(monkeypatch):
    """Adding a dataset is one decorated loader in data/sources.py: its name, channels,
    official test split and downloadability come from that one entry."""
    registry = sources.DATA_SOURCES
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.setattr(registry, "_facts", dict(registry._facts))
    with pytest.raises(ValidationError, match="unknown dataset 'tiny_stand_in'"):
        DataConfig(name="tiny_stand_in")

    @registry.register("tiny_stand_in", channels=1, official_test=True, downloadable=True)
    def _tiny(config: sources.SourceOptions) -> sources.Source:
        """Forty 1x4x4 examples of two classes, with a test split of their own."""
        x = np.linspace(0, 1, 40 * 16, dtype=np.float32).reshape(40, 1, 4, 4)
        y = np.arange(40) % 2
        return sources.Source(x, y, x[:10].copy(), y[:10].copy())

    config = DataConfig(name="tiny_stand_in", download=True, val_fraction=0.25, test_fraction=0.9)
    bundle = prepare(config, seed=0)  # official test: the 0.9 test fraction does not apply
    assert bundle.input_shape == (1, 4, 4) and len(bundle.test[1]) == 10 and len(bundle.val[1]) == 10
    with pytest.raises(ValidationError, match="one value per input channel"):
        DataConfig(name="tiny_stand_in", mean=(0.5, 0.5), std=(0.2, 0.2))
    with pytest.raises(ValidationError, match="data.download applies only to"):
        DataConfig(name="digits", download=True)
    assert registry.facts("cifar10") == sources.SourceFacts(channels=3, official_test=True,
                                                            downloadable=True)
