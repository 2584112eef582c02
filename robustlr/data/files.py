"""The user's own data: an ``.npz`` file (``data: {name: npz, path: FILE}``) or a factory of
torch Datasets (``data: {name: "package.module:factory", options: {...}}``).

npz: arrays ``x`` and ``y``, optionally ``x_test`` and ``y_test`` (then the official test
split). Inputs are uint8 (scaled by 1/255) or floats already in [0, 1]; images are (N, C, H, W)
or (N, H, W, C) (a last axis of 1, 3 or 4 with a larger second axis is read as channels
last), signals (N, C, L) or (N, L).

A factory returns ``(train, test)``, ``(train, test, val)`` or a mapping with those keys; each
is a torch Dataset of (input, label) with inputs as uint8/float tensors, PIL images or arrays.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from robustlr import plugins
from robustlr.data.config import DataConfig
from robustlr.data.labels import check_range
from robustlr.data.sources import DATA_SOURCES, DataError, DatasetNotFoundError, Source
from robustlr.data.streaming import Examples


def _layout(x: np.ndarray, what: str) -> np.ndarray:
    if x.ndim == 2:
        return x[:, None, :]
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] > 4:
        return np.moveaxis(x, -1, 1)
    if x.ndim in (3, 4):
        return x
    raise DataError(f"data.path: {what} has shape {x.shape}; expected (N, C, H, W), (N, H, W, C), "
                    "(N, C, L) or (N, L)")


def _inputs(x: np.ndarray, what: str) -> np.ndarray:
    x = _layout(x, what)
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x, dtype=np.float32) / np.float32(255.0)
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"data.path: {what} has dtype {x.dtype}; expected uint8 or float in [0, 1]")
    if x.size and np.isnan(x).any():  # before nanmin, which warns on an all-NaN array
        raise DataError(f"data.path: {what} has NaN values; store uint8 or floats in [0, 1]")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise DataError(f"data.path: {what} has values outside [0, 1] (min {x.min():.3g}, "
                        f"max {x.max():.3g}); store uint8 or scale floats to [0, 1]")
    return np.ascontiguousarray(x, dtype=np.float32)


def _labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"data.path: {what} must be {n} integer labels (one per input), got "
                        f"shape {y.shape} and dtype {y.dtype}")
    check_range(y, f"data.path: the labels {what}")  # before the cast: 1e20 is no INT64_MIN
    return y.astype(np.int64)


MAX_NPZ_BYTES = 1 << 31
"""The most an .npz may inflate to (its members' sizes, read from the zip's headers before any
member is read): 2 GiB holds CIFAR-10 as float32 three times over; larger data streams from a
Dataset factory."""


def _check_archive(path: str) -> None:
    """Refuse, before reading any array: a file that is no zip, members that inflate beyond
    MAX_NPZ_BYTES (a 4 MB zip bomb of 4 GB), object arrays (they unpickle), and a header that
    claims more values than its member stores (numpy would allocate them first)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            total = sum(member.file_size for member in members)
            if total > MAX_NPZ_BYTES:
                raise DataError(f"data.path: {path!r} inflates to {total} bytes; at most "
                                f"{MAX_NPZ_BYTES} are read from an .npz (use a Dataset factory)")
            for member in members:
                with archive.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                              else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = reader(handle)
                if dtype.hasobject:
                    raise DataError(f"data.path: {path!r}: array {member.filename!r} holds Python "
                                    "objects (refused: loading them runs pickle); store numbers")
                if math.prod(shape) * dtype.itemsize > member.file_size:
                    raise DataError(f"data.path: {path!r}: array {member.filename!r} claims shape "
                                    f"{shape} of {dtype}, more than its {member.file_size} bytes")
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as error:
        raise DataError(f"data.path: {path!r} is not a readable .npz file "
                        f"({type(error).__name__}: {error})") from None


@DATA_SOURCES.register("npz")
def npz(config: DataConfig) -> Source:
    """The user's arrays in an .npz file (data.path): x, y, optionally x_test, y_test."""
    path = config.path
    if path is None or not os.path.isfile(path):
        raise DatasetNotFoundError(f"data.path: no such file {path!r} (name 'npz' reads an .npz file)")
    _check_archive(path)
    try:
        arrays = np.load(path, allow_pickle=False)
        keys = set(arrays.files)
    except (OSError, ValueError) as error:
        raise DataError(f"data.path: {path!r} is not a readable .npz file ({error})") from None
    missing = [key for key in ("x", "y") if key not in keys]
    if missing:
        raise DataError(f"data.path: {path!r} has no array {missing[0]!r} (it holds "
                        f"{', '.join(sorted(keys)) or 'nothing'}); an npz needs x and y, "
                        "optionally x_test and y_test")
    if ("x_test" in keys) != ("y_test" in keys):
        raise DataError(f"data.path: {path!r} needs both x_test and y_test, or neither")
    x = _inputs(arrays["x"], "x")
    parts = [x, _labels(arrays["y"], len(x), "y")]
    if "x_test" in keys:
        x_test = _inputs(arrays["x_test"], "x_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(f"data.path: x_test has inputs of shape {x_test.shape[1:]}, x {x.shape[1:]}")
        parts += [x_test, _labels(arrays["y_test"], len(x_test), "y_test")]
    return Source(*parts)


@dataclass(frozen=True)
class DatasetSets:
    train: Examples
    test: Examples
    val: Examples | None


def factory_datasets(config: DataConfig) -> DatasetSets:
    field = f"data.name {config.name!r}"
    factory = plugins.resolve(config.name, field="data.name")
    result = plugins.call(factory, dict(config.options), {"root": config.root}, field=field)
    if isinstance(result, Mapping):
        parts = [result.get("train"), result.get("test"), result.get("val")]
    elif isinstance(result, (tuple, list)) and len(result) in (2, 3):
        parts = list(result) + [None] * (3 - len(result))
    else:
        raise DataError(f"{field}: the factory must return (train, test), (train, test, val) or "
                        f"a mapping with those keys, got {type(result).__name__}")
    for key, dataset in zip(("train", "test", "val"), parts):
        if dataset is None and key != "val":
            raise DataError(f"{field}: the factory returned no {key} dataset")
        if dataset is not None and not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise DataError(f"{field}: the {key} dataset is a {type(dataset).__name__}, not a "
                            "torch Dataset (with __getitem__ and __len__)")
        if dataset is not None:
            _check_length(dataset, f"{field}: the {key} dataset")
    train, test, val = (Examples(d) if d is not None else None for d in parts)
    return DatasetSets(train, test, val)  # type: ignore[arg-type]


MAX_EXAMPLES = 10**8
"""The most examples a factory's split may have: its labels (and, in memory, its inputs) are
read one example at a time, so a ``__len__`` of 10**12 would hang before any check."""


def _check_length(dataset: object, what: str) -> None:
    try:
        count = len(dataset)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError) as error:  # __len__ above sys.maxsize, or no int
        raise DataError(f"{what}: len() raised {type(error).__name__}: {error}") from None
    if count == 0:
        raise DataError(f"{what} is empty")
    if count > MAX_EXAMPLES:
        raise DataError(f"{what} has {count} examples; at most {MAX_EXAMPLES} are read (each "
                        "label is read one example at a time)")


def labels(dataset: Examples) -> np.ndarray:
    """Every label of ``dataset``: its ``targets`` when it has them (torchvision's datasets),
    else read one example at a time (the inputs are loaded and discarded); checked before the
    cast to int64 (a float 1e20 would become INT64_MIN)."""
    base = dataset.base
    targets = getattr(base, "targets", None)
    if targets is not None and len(targets) == len(base):
        raw = np.asarray(targets)
    else:
        raw = np.asarray([_number(base[i][1]) for i in range(len(base))])
    check_range(raw, f"data.name: the labels of {type(base).__name__}")
    return raw.astype(np.int64)


def _number(label: object) -> float | int:
    value = label.item() if hasattr(label, "item") else label
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def example_shape(dataset: Examples) -> tuple[int, ...]:
    try:
        return tuple(dataset[0][0].shape)
    except Exception as error:
        raise DataError(f"data.name {dataset.base!r}: reading example 0 raised "
                        f"{type(error).__name__}: {error}") from None
