"""The worst class of a trial (issue 24): the least accurate class present and its gap to the
mean over classes, for clean and robust per-class accuracy."""

from __future__ import annotations

import math

import pytest

from robustlr.training.slices import slice_fields, worst_class


def test_the_worst_class_skips_classes_absent_from_the_split():
    worst = worst_class([0.9, math.nan, 0.5, 0.7])
    assert worst == {"class": 2, "acc": 0.5, "gap": pytest.approx(0.7 - 0.5)}
    assert worst_class([math.nan]) is None and worst_class(None) is None


def test_clean_and_robust_slices_come_from_their_own_lists():
    fields = slice_fields({"per_class_acc": [0.9, 0.8], "robust_per_class_acc": [0.2, 0.6]})
    assert (fields["worst_class"], fields["worst_class_acc"]) == (1, 0.8)
    assert fields["worst_class_gap"] == pytest.approx(0.05)
    assert (fields["robust_worst_class"], fields["robust_worst_class_acc"]) == (0, 0.2)
    assert fields["robust_worst_class_gap"] == pytest.approx(0.2)
    assert "robust_worst_class" not in slice_fields({"per_class_acc": [0.9, 0.8]})
