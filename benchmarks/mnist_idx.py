"""Full MNIST for the plain reference scripts, read with numpy from the idx files that
``robustlr data fetch mnist --root DIR`` writes (DIR/MNIST/raw): pixels in [0, 1] as float32,
shape (N, 1, 28, 28), labels int64, the official 60,000 / 10,000 split in file order."""

from __future__ import annotations

import argparse
import gzip
import os

import numpy as np
import torch


def read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        data = handle.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(root: str) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test)."""
    raw = os.path.join(root, "MNIST", "raw")
    x, y, x_test, y_test = (read_idx(os.path.join(raw, name)) for name in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))

    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32) / 255.0)[:, None]

    return images(x), torch.from_numpy(y.astype(np.int64)), images(x_test), torch.from_numpy(y_test.astype(np.int64))


def arguments(description: str, *, epochs: int) -> argparse.ArgumentParser:
    """The options every plain reference takes: --root, --seeds, --epochs, --limit, --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", required=True, help="folder holding MNIST/raw (robustlr data fetch mnist)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--limit", type=int, default=None, help="first N training examples (smoke runs)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    return parser


def data_for(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    """Full MNIST from ``--root``, the training split cut to ``--limit``; one torch thread
    (small models run fastest so, FINDINGS.md)."""
    torch.set_num_threads(1)
    data = load(args.root)
    if args.limit:
        data = (data[0][:args.limit], data[1][:args.limit], data[2], data[3])
    return data
