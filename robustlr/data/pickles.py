"""Reading the CIFAR python batches without running code from the data folder.

A pickle is a program: ``pickle.load`` on a planted ``data_batch_1`` runs whatever it says.
These files are a dict of a uint8 array, a label list and names, so the unpickler here resolves
only what numpy needs to rebuild an array (``ndarray``, ``dtype``, ``_reconstruct``) and refuses
every other global with one line; the result is then checked against the expected layout.
"""

from __future__ import annotations

import pickle
from typing import Any, BinaryIO

import numpy as np

from robustlr.errors import InputError

_ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
            ("_codecs", "encode")}  # how protocol 2 spells bytes
_KEYS = {"batch_label", "labels", "fine_labels", "coarse_labels", "data", "filenames"}


class UntrustedPickleError(InputError):
    """A data file that is not the plain arrays it should be; never unpickled further."""


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UntrustedPickleError(f"refers to {module}.{name}, which a data batch never does")


def load_batch(handle: BinaryIO, name: str) -> dict[str, Any]:
    """The batch dict in ``handle`` (named ``name`` in messages), or a one-line error."""
    try:
        batch = _ArraysOnly(handle, encoding="latin1").load()
    except UntrustedPickleError as error:
        raise UntrustedPickleError(f"{name}: refused to load: it {error} (was the file "
                                   "replaced? re-download the dataset)") from None
    except Exception as error:  # a truncated or garbled file fails in many ways
        raise UntrustedPickleError(f"{name}: not a CIFAR python batch ({type(error).__name__})") from None
    _check(batch, name)
    return batch


def _check(batch: Any, name: str) -> None:
    if not isinstance(batch, dict) or not set(batch) <= _KEYS or "data" not in batch:
        raise UntrustedPickleError(f"{name}: not a CIFAR python batch (expected a dict with "
                                   "'data' and 'labels')")
    data, labels = batch["data"], batch.get("labels", batch.get("fine_labels"))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32):
        raise UntrustedPickleError(f"{name}: 'data' is not a uint8 array of N x 3072 pixels")
    if not (isinstance(labels, list) and len(labels) == len(data)
            and all(isinstance(label, int) and not isinstance(label, bool) for label in labels)):
        raise UntrustedPickleError(f"{name}: 'labels' is not a list of {len(data)} integers")
