"""A prepared dataset: its three splits as tensors and what a model needs to know about it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robustlr.data import streaming
from robustlr.privacy.ledger import Entry

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
    train_stream: streaming.Examples | None = None
    """The training examples when they stream; then ``train`` is (empty inputs, labels)."""
    ledger: tuple[Entry, ...] = ()
    """What preparing the data computed from the training split and releases with the model,
    as privacy-ledger entries (see robustlr.privacy.ledger): ``normalization`` (``none`` for
    exact statistics; a DP trial's bundle, from :func:`normalization.for_trial`, holds
    ``public`` or ``gaussian`` instead, and the ``dataset_size`` and ``classes`` it names
    public). See docs/privacy-ledger.md."""

    @property
    def streamed(self) -> bool:
        return self.train_stream is not None
