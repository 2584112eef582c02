"""Models built from specs: ``"cnn(width=32)"``, ``{name: resnet18, norm: group}``,
``"wrn(depth=34, width=10)"``, or the user's own network (``"mymodels:Net"``,
``"torchvision:resnet18(small_input=true)"``, ``"timm:<name>"``; see :mod:`.plugin`).

Every model takes inputs in [0, 1] of the dataset's ``input_shape`` and returns logits of
shape (N, num_classes). A built-in model is a :class:`Classifier`: ``normalize`` (a
:class:`Normalize` layer holding the training split's per-channel mean and std),
``features``, and ``head``, the last layer, an ``nn.Linear``. A plug-in model is a
:class:`Plugged`: ``normalize``, ``net`` (the user's module) and ``head`` (its logits layer,
found by a dry run). ``norm="group"`` variants train under Opacus (DP-SGD).
"""

from __future__ import annotations

import importlib
import pkgutil

from robustlr.models.io import load, read_metadata, save
from robustlr.models.layers import NORMS, Classifier, Normalize
from robustlr.models.plugin import Plugged, parse_spec
from robustlr.models.registry import MODELS, build

# A model file registers its factory with @MODELS.register("name"); importing every module of
# the package here is what makes a new file enough (no list of models to keep in step).
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["MODELS", "NORMS", "Classifier", "Normalize", "Plugged", "build", "parse_spec",
           "save", "load", "read_metadata"]
