"""robustlr: learning-rate schedules as the experimental variable under threat.

The stable Python API: ``robustlr.run`` / ``robustlr.open`` (a run folder's results as
pandas DataFrames, :mod:`robustlr.api`), ``robustlr.data.load``, ``robustlr.models.load`` and
``robustlr.schedules.parse`` (see the README). Subpackages load on first use, so
``import robustlr`` (and the CLI's ``--help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["Run", "data", "models", "open", "run", "schedules", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("data", "models", "schedules"):
        return importlib.import_module(f"robustlr.{name}")
    if name in ("run", "open", "Run"):
        return getattr(importlib.import_module("robustlr.api"), name)
    raise AttributeError(f"module 'robustlr' has no attribute {name!r}")
