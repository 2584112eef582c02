"""What the benchmark scripts share: one thread everywhere, this repository on the path, the
order of the measured variants rotated every round, and medians over the rounds.

Call :func:`setup` before numpy or torch is imported: their thread pools read the
environment once, when they load. Ratios of medians measured in one process, in rotating
order, are what the scripts report (absolute seconds mean little on a shared machine): a busy
moment slows every variant of its round alike and no variant always runs first.

    import _harness

    _harness.setup()
    import torch  # the scripts' per-file ruff setting allows imports after this (E402)
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
T = TypeVar("T")


def setup(*, force: bool = False) -> None:
    """One BLAS/OpenMP thread (``force``: even where the environment asks for more), and the
    repository first on ``sys.path`` so a checkout runs without being installed."""
    for variable in THREAD_VARIABLES:
        if force:
            os.environ[variable] = "1"
        else:
            os.environ.setdefault(variable, "1")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def rotated(names: Sequence[T], round_index: int) -> list[T]:
    """``names`` started at the ``round_index``-th (cyclically): round r runs the variants in
    this order, so each one leads equally often."""
    shift = round_index % len(names) if names else 0
    return list(names[shift:]) + list(names[:shift])


def medians(samples: Mapping[str, Iterable[float]]) -> dict[str, float]:
    """The median of each variant's samples."""
    return {name: statistics.median(values) for name, values in samples.items()}
