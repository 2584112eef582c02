"""Datasets as tensors: inputs float32 in [0, 1] ((N, C, H, W) or (N, C, L)), labels int64.

Normalization is not applied here: it is the first layer of every model, so attacks and
their epsilons live in input space. :func:`prepare` reports the per-channel mean and std for
that layer: ``data.mean``/``data.std`` when given, else the training split's exact
statistics, which a DP trial replaces (:mod:`robustlr.data.normalization`).

The train/validation/test split depends only on ``DataConfig.split_seed``, so trials with
different seeds are compared on the same test set; the trial ``seed`` only draws the
``limit`` subset of the training split.

Training data that fits (``data.stream``: false, or auto below ``data.stream_above_gb``) is
held as tensors and batched on the device (the fast path); otherwise the training split
streams through a DataLoader (:mod:`robustlr.data.streaming`) and ``DataBundle.train`` holds
only its labels. Validation and test splits are always held in memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from robustlr.data import augment, files, normalization, streaming
from robustlr.data import labels as label_checks
from robustlr.data.bundle import SPLITS, DataBundle, Split
from robustlr.data.config import DataConfig, SyntheticOptions
from robustlr.data.sources import DATA_SOURCES, DataError, DatasetNotFoundError, Source
from robustlr.plugins import is_import_path
from robustlr.privacy.ledger import Entry


def _holdout(y: np.ndarray, indices: np.ndarray, fraction: float, seed: int,
             what: str) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (kept, held out), stratified by label; ``fraction`` of the whole."""
    if fraction == 0.0:
        return indices, indices[:0]
    size = max(1, round(fraction * len(indices)))
    if size >= len(indices):
        raise DataError(f"cannot hold out a {what} split of {size} from {len(indices)} examples "
                        "and keep any for training; lower data.val_fraction or data.test_fraction")
    try:
        kept, held = train_test_split(indices, test_size=size, random_state=seed,
                                      stratify=y[indices])
    except ValueError as error:  # too few examples of some class to stratify
        warnings.warn(f"{what} split is not stratified: {error}", stacklevel=3)
        kept, held = train_test_split(indices, test_size=size, random_state=seed)
    return np.sort(kept), np.sort(held)


def _split_indices(config: DataConfig, y: np.ndarray, *, has_test: bool,
                   has_val: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(train, val, test) indices of ``y``; None where the data brings that split itself."""
    everything = np.arange(len(y))
    if has_test:
        if has_val:
            return everything, None, None
        train, val = _holdout(y, everything, config.val_fraction, config.split_seed, "validation")
        return train, val, None
    rest, test = _holdout(y, everything, config.test_fraction, config.split_seed, "test")
    if has_val:
        return rest, None, test
    # val_fraction is of the whole dataset, so rescale it to the remainder
    val_share = config.val_fraction * len(y) / len(rest)
    train, val = _holdout(y, rest, val_share, config.split_seed + 1, "validation")
    return train, val, test


def _limit(config: DataConfig, train: np.ndarray, seed: int) -> np.ndarray:
    if config.limit is not None and config.limit < len(train):
        generator = np.random.default_rng(seed)
        return np.sort(generator.choice(train, size=config.limit, replace=False))
    return train


def _tensors(x: np.ndarray, y: np.ndarray) -> Split:
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def _in_memory(config: DataConfig, source: Source, val: Split | None, seed: int) -> DataBundle:
    train, val_index, test = _split_indices(config, source.y, has_test=source.x_test is not None,
                                            has_val=val is not None)
    train = _limit(config, train, seed)
    x_train, y_train = _tensors(source.x[train], source.y[train])
    if test is None:
        test_split = _tensors(source.x_test, source.y_test)
    else:
        test_split = _tensors(source.x[test], source.y[test])
    val_split = val if val is not None else _tensors(source.x[val_index], source.y[val_index])
    (mean, std), ledger = _normalization(config, lambda: x_train, streamed=False)
    return DataBundle(train=(x_train, y_train), val=val_split, test=test_split,
                      num_classes=_classes(source.y, test_split[1], val_split[1]),
                      input_shape=tuple(source.x.shape[1:]), mean=mean, std=std,
                      name=config.name, ledger=ledger)


def _normalization(config: DataConfig, x_train: Callable[[], torch.Tensor], *,
                   streamed: bool) -> tuple[normalization.Stats, tuple[Entry, ...]]:
    """The user's public constants, else the training split's exact statistics (a DP trial
    replaces those: normalization.for_trial)."""
    given = normalization.configured(config)
    if given is not None:
        return given[0], (given[1],)
    return normalization.exact(x_train()), (normalization.exact_entry(streamed=streamed),)


def _classes(*labels) -> int:  # training, test, validation: checked in data/labels.py
    return label_checks.num_classes(*labels)


STATS_SAMPLE = 5000
"""Examples a streamed training split's mean and std are estimated from (drawn with
``split_seed``); in memory they are exact."""


def _streamed(config: DataConfig, examples: streaming.Examples, labels: np.ndarray,
              val: Split | None, test: Split | None, seed: int) -> DataBundle:
    """A bundle whose training split streams from ``examples`` (indexed by ``labels``)."""
    train, val_index, test_index = _split_indices(config, labels, has_test=test is not None,
                                                  has_val=val is not None)
    train = _limit(config, train, seed)
    if val is None:
        val = streaming.materialize(streaming.Examples(examples.base, val_index))
    if test is None:
        test = streaming.materialize(streaming.Examples(examples.base, test_index))
    sample = np.random.default_rng(config.split_seed).permutation(train)[:STATS_SAMPLE]
    (mean, std), ledger = _normalization(config, lambda: streaming.materialize(
        streaming.Examples(examples.base, np.sort(sample)))[0], streamed=True)
    y_train = torch.as_tensor(labels[train], dtype=torch.int64)
    shape = tuple(val[0].shape[1:]) if len(val[0]) else tuple(test[0].shape[1:])
    return DataBundle(train=(torch.empty((0, *shape)), y_train), val=val, test=test,
                      num_classes=_classes(labels, test[1], val[1]), input_shape=shape, mean=mean,
                      std=std, name=config.name, train_stream=streaming.Examples(examples.base, train),
                      ledger=ledger)


def _streams(config: DataConfig, count: int, shape: tuple[int, ...]) -> bool:
    if config.stream != "auto":
        return bool(config.stream)
    return count * int(np.prod(shape)) * 4 > config.stream_above_gb * 2**30


def _from_factory(config: DataConfig, seed: int) -> DataBundle:
    sets = files.factory_datasets(config)
    shape = files.example_shape(sets.train)
    val = streaming.materialize(sets.val) if sets.val is not None else None
    if _streams(config, len(sets.train), shape):
        test = streaming.materialize(sets.test)
        return _streamed(config, sets.train, files.labels(sets.train), val, test, seed)
    x, y = streaming.materialize(sets.train)
    x_test, y_test = streaming.materialize(sets.test)
    if x_test.shape[1:] != x.shape[1:]:
        raise DataError(f"data.name {config.name!r}: test inputs have shape {tuple(x_test.shape[1:])}, "
                        f"training inputs {tuple(x.shape[1:])}")
    source = Source(x.numpy(), y.numpy(), x_test.numpy(), y_test.numpy())
    return _in_memory(config, source, val, seed)


def prepare(config: DataConfig, *, seed: int) -> DataBundle:
    """Load ``config.name`` and split it into train/validation/test (see the module doc)."""
    if is_import_path(config.name):
        bundle = _from_factory(config, seed)
    else:
        source = DATA_SOURCES.loader(config.name)(config)
        if _streams(config, len(source.y), source.x.shape[1:]):
            test = _tensors(source.x_test, source.y_test) if source.x_test is not None else None
            examples = streaming.Examples(streaming.Arrays(source.x, source.y))
            bundle = _streamed(config, examples, source.y, None, test, seed)
        else:
            bundle = _in_memory(config, source, None, seed)
    if config.mean is not None and len(config.mean) != bundle.input_shape[0]:
        raise DataError(f"data.mean/data.std need one value per input channel "
                        f"({bundle.input_shape[0]}), got {len(config.mean)}")
    try:
        augment.build(config.augment, input_shape=bundle.input_shape)
    except ValueError as error:  # a spec that does not fit these inputs
        raise DataError(str(error)) from None
    return bundle


def load(name: str, *, split: str = "test", seed: int = 0, **options: Any) -> Split:
    """One split ``(x, y)`` of dataset ``name``; ``options`` are :class:`DataConfig` fields.

    ``seed`` is the trial seed, as in :func:`prepare`; the split itself follows ``split_seed``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    bundle = prepare(DataConfig(name=name, **options), seed=seed)
    if split == "train" and bundle.train_stream is not None:
        return streaming.materialize(bundle.train_stream)
    return getattr(bundle, split)


DATASETS = tuple(DATA_SOURCES.names())
"""The built-in dataset names (files and sources above have registered theirs); any
``"package.module:factory"`` import path is also a dataset name."""

__all__ = ["DATA_SOURCES", "DATASETS", "DataBundle", "augment", "DataConfig", "DataError", "DatasetNotFoundError",
           "SyntheticOptions", "load", "prepare"]
