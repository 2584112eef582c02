"""robustlr: learning-rate schedules as the experimental variable under threat.

The stable Python API: ``robustlr.data.load``, ``robustlr.models.load`` and
``robustlr.schedules.parse`` (see the README).
"""

from . import data, models, schedules

__version__ = "0.1.0"
__all__ = ["data", "models", "schedules", "__version__"]
