"""Labels checked once, before a model or a trial sees them: integers in [0, MAX_CLASSES), and
no test or validation label outside the classes the training split defines.

A label of 2**40 would make the model a head of 2**40 rows; -1 is the certification's ABSTAIN
code; a test label 50 beside training labels 0..9 would silently make the task 51 classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robustlr.data.sources import DataError

MAX_CLASSES = 1 << 17
"""The most classes a dataset may have (ImageNet-21k has 21,843)."""
ROLES = ("training", "test", "validation")


def num_classes(*labels: Any) -> int:
    """The number of classes the training labels (``labels[0]``) define, after checking every
    split's labels (training, test, validation, in that order)."""
    arrays = [np.asarray(y) for y in labels]
    for role, y in zip(ROLES, arrays):
        check_range(y, f"the {role} labels")
    classes = int(arrays[0].max()) + 1 if arrays[0].size else 0
    for role, y in zip(ROLES[1:], arrays[1:]):
        if y.size and int(y.max()) >= classes:
            raise DataError(f"the {role} split has label {int(y.max())}, but the training "
                            f"labels are 0 .. {classes - 1}; a class no training example has "
                            "cannot be learned (check the labels of that split)")
    return classes


def check_range(y: np.ndarray, what: str) -> None:
    """Integer labels in [0, MAX_CLASSES) (floats only when integral and in range)."""
    if y.size == 0:
        return
    if y.dtype.kind not in "iuf":
        raise DataError(f"{what} have dtype {y.dtype}; labels are integers 0 .. classes - 1")
    low, high = float(y.min()), float(y.max())  # python floats: no float16 overflow
    if y.dtype.kind == "f" and not (np.isfinite(low) and np.isfinite(high)
                                    and np.all(np.mod(y, 1) == 0)):
        raise DataError(f"{what} are not all whole numbers; labels are integers 0 .. classes - 1")
    if low < 0 or high >= MAX_CLASSES:
        raise DataError(f"{what} range from {low:g} to {high:g}; labels are integers 0 .. classes - 1 "
                        f"with at most {MAX_CLASSES} classes")
