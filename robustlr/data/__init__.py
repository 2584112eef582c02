"""Datasets as tensors: inputs float32 in [0, 1] ((N, C, H, W) or (N, C, L)), labels int64.

Normalization is not applied here: it is the first layer of every model, so attacks and
their epsilons live in input space. :func:`prepare` reports the training split's
per-channel mean and std for that layer.

The train/validation/test split depends only on ``DataConfig.split_seed``, so trials with
different seeds are compared on the same test set; the trial ``seed`` only draws the
``limit`` subset of the training split.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from robustlr.data.config import DATASETS, OFFICIAL_TEST, DataConfig, SyntheticOptions
from robustlr.data.sources import SOURCES, DataError, DatasetNotFoundError

Split = tuple[torch.Tensor, torch.Tensor]
SPLITS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class DataBundle:
    """The three splits of one dataset and what a model needs to know about it."""

    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str


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


def _split_indices(config: DataConfig, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    everything = np.arange(len(y))
    if config.name in OFFICIAL_TEST:
        train, val = _holdout(y, everything, config.val_fraction, config.split_seed, "validation")
        return train, val, None
    rest, test = _holdout(y, everything, config.test_fraction, config.split_seed, "test")
    # val_fraction is of the whole dataset, so rescale it to the remainder
    val_share = config.val_fraction * len(y) / len(rest)
    train, val = _holdout(y, rest, val_share, config.split_seed + 1, "validation")
    return train, val, test


def _tensors(x: np.ndarray, y: np.ndarray) -> Split:
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    dims = [0] + list(range(2, x.dim()))
    mean = x.double().mean(dim=dims)
    std = x.double().std(dim=dims, correction=0).clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())


def prepare(config: DataConfig, *, seed: int) -> DataBundle:
    """Load ``config.name`` and split it into train/validation/test (see the module doc)."""
    source = SOURCES[config.name](config)
    train, val, test = _split_indices(config, source.y)
    if config.limit is not None and config.limit < len(train):
        generator = np.random.default_rng(seed)
        train = np.sort(generator.choice(train, size=config.limit, replace=False))
    x_train, y_train = _tensors(source.x[train], source.y[train])
    if test is None:
        test_split = _tensors(source.x_test, source.y_test)
    else:
        test_split = _tensors(source.x[test], source.y[test])
    mean, std = _channel_stats(x_train)
    labels = np.concatenate([source.y] + ([source.y_test] if source.y_test is not None else []))
    return DataBundle(train=(x_train, y_train), val=_tensors(source.x[val], source.y[val]),
                      test=test_split, num_classes=int(labels.max()) + 1,
                      input_shape=tuple(source.x.shape[1:]), mean=mean, std=std,
                      name=config.name)


def load(name: str, *, split: str = "test", seed: int = 0, **options: Any) -> Split:
    """One split ``(x, y)`` of dataset ``name``; ``options`` are :class:`DataConfig` fields.

    ``seed`` is the trial seed, as in :func:`prepare`; the split itself follows ``split_seed``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    return getattr(prepare(DataConfig(name=name, **options), seed=seed), split)


__all__ = ["DATASETS", "DataBundle", "DataConfig", "DataError", "DatasetNotFoundError",
           "SyntheticOptions", "load", "prepare"]
