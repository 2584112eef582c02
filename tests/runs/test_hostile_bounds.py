"""Bounds before work, and inputs that were accepted and then failed every trial (or gave a
wrong number): each is a one-line config error, exit 2, before any run folder exists."""

from __future__ import annotations

import io
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import cli, one_line, tiny, write_config


def _refused(tmp_path: Path, raw: dict, *args) -> str:
    out = tmp_path / "run"
    message = one_line(cli("run", write_config(tmp_path / "c.yaml", raw), "--out", out,
                           "--no-progress", *args), 2)
    assert not out.exists()
    return message


def test_a_grid_above_the_limit_is_refused_with_its_size(tmp_path):
    raw = tiny(lr_scales=[1 + i / 1000 for i in range(500)], seeds=list(range(2000)))
    message = _refused(tmp_path, raw)
    assert "2,000,000 trials" in message and "--max-trials" in message
    message = _refused(tmp_path, tiny(seeds=[0, 1, 2]), "--max-trials", "5")
    assert "6 trials" in message and "limit of 5" in message


def _npz(tmp_path: Path, **arrays) -> dict:
    path = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    defaults = {"x": rng.random((60, 1, 4, 4)).astype(np.float32), "y": np.arange(60) % 3}
    np.savez(path, **{**defaults, **arrays})
    raw = tiny(data={"name": "npz", "path": str(path)})
    del raw["data"]["synthetic"]
    return raw


LABELS = {
    "float labels 1e20": ({"y": np.full(60, 1e20)}, "labels"),
    "a label of 2**40": ({"y": np.where(np.arange(60) == 0, 2**40, np.arange(60) % 3)}, "at most"),
    "a test label never seen in training": (
        {"x_test": np.zeros((6, 1, 4, 4), np.float32), "y_test": np.array([0, 1, 2, 0, 1, 50])},
        "label 50"),
    "a negative test label": (
        {"x_test": np.zeros((6, 1, 4, 4), np.float32), "y_test": np.array([0, 1, 2, 0, 1, -1])},
        "labels"),
    "complex labels": ({"y": (np.arange(60) % 3).astype(np.complex64)}, "dtype"),
}


@pytest.mark.parametrize("case", list(LABELS))
def test_bad_labels_are_a_config_error(tmp_path, case):
    arrays, words = LABELS[case]
    assert words in _refused(tmp_path, _npz(tmp_path, **arrays))


def test_an_object_array_in_an_npz_is_refused(tmp_path):
    raw = _npz(tmp_path)
    path = Path(raw["data"]["path"])
    with zipfile.ZipFile(path, "a") as archive, archive.open("x_test.npy", "w") as member:
        np.lib.format.write_array(member, np.array([{"a": 1}] * 60, dtype=object),
                                  allow_pickle=True)
    assert "objects" in _refused(tmp_path, raw)


def test_an_npz_that_inflates_beyond_the_limit_is_refused_from_its_headers(tmp_path, monkeypatch):
    from robustlr.data import files

    monkeypatch.setattr(files, "MAX_NPZ_BYTES", 1 << 20)  # the mechanism, without a 4 GB bomb
    raw = _npz(tmp_path)
    np.savez_compressed(raw["data"]["path"], x=np.zeros((4096, 1, 16, 16), np.float32),
                        y=np.zeros(4096, np.int64))
    assert "inflates to" in _refused(tmp_path, raw)


def test_an_npy_header_claiming_more_than_its_member_stores_is_refused(tmp_path):
    raw = _npz(tmp_path)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**12, 1, 4, 4)})
    with zipfile.ZipFile(raw["data"]["path"], "w") as archive:
        archive.writestr("x.npy", header.getvalue() + b"\0" * 64)
        archive.writestr("y.npy", header.getvalue())
    assert "claims shape" in _refused(tmp_path, raw)


FACTORY = '''
import torch
from torch.utils.data import Dataset

class Huge(Dataset):
    def __len__(self):
        return 10**12
    def __getitem__(self, i):
        return torch.zeros(1, 4, 4), 0

class Small(Dataset):
    def __init__(self, labels):
        self.labels = labels
    def __len__(self):
        return len(self.labels)
    def __getitem__(self, i):
        return torch.full((1, 4, 4), (i % 7) / 7), self.labels[i]

def huge():
    return Huge(), Small([0, 1, 2] * 10)

def abstaining():
    return Small([0, 1, 2] * 20), Small([0, 1, 2, -1] * 5)
'''


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "hostile_sets.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("hostile_sets", None)


@pytest.mark.parametrize("factory, words", [("huge", "at most 100000000"),
                                            ("abstaining", "labels")])
def test_a_hostile_dataset_factory_is_a_config_error(tmp_path, factories, factory, words):
    raw = tiny(data={"name": f"hostile_sets:{factory}", "val_fraction": 0.2})
    del raw["data"]["synthetic"]
    assert words in _refused(tmp_path, raw)


def test_autoattack_on_three_classes_is_a_config_error(tmp_path):
    raw = tiny(evaluation={"attack": "fgsm(eps=0.1)", "final": ["autoattack(eps=0.1)"]})
    message = _refused(tmp_path, raw)
    assert "evaluation.final[0]" in message and "at least 4 classes" in message


def test_a_clip_schedule_starting_at_zero_is_a_config_error(tmp_path):
    raw = tiny(regimes=["dp(noise_multiplier=1.0, max_grad_norm=1.0, "
                        "clip_schedule='linear(warmup=0.5)')"])
    message = _refused(tmp_path, raw)
    assert "clip_schedule" in message and "above 0" in message
