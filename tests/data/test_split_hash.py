"""The split fingerprint that `robustlr attack` checks a checkpoint's data against: it must
change with any held-out input or label it claims to cover, and ignore the training set (a
poisoned trial changes that)."""

from __future__ import annotations

import dataclasses

import pytest

from robustlr import data
from robustlr.data.provenance import split_hash


@pytest.fixture(scope="module")
def bundle():
    return data.prepare(data.DataConfig(name="digits"), seed=0)


def _with(bundle, split: str, part: int, edit):
    tensors = [t.clone() for t in getattr(bundle, split)]
    edit(tensors[part])
    return dataclasses.replace(bundle, **{split: tuple(tensors)})


def _bump_first(t):
    t.view(-1)[0] += 1


@pytest.mark.parametrize("split, part", [("test", 0), ("test", 1), ("val", 1)],
                         ids=["test inputs", "test labels", "validation labels"])
def test_the_fingerprint_changes_with_one_held_out_value(bundle, split, part):
    assert split_hash(_with(bundle, split, part, _bump_first)) != split_hash(bundle)


def test_the_fingerprint_ignores_the_training_set(bundle):
    assert split_hash(_with(bundle, "train", 0, _bump_first)) == split_hash(bundle)
