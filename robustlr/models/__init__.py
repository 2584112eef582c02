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

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from robustlr.models import plugin
from robustlr.models.cnn import cnn, cnn1d
from robustlr.models.layers import NORMS, Classifier, Normalize
from robustlr.models.mlp import mlp
from robustlr.models.plugin import Plugged, parse_spec
from robustlr.models.preact import preact_resnet18
from robustlr.models.resnet import resnet18
from robustlr.models.wrn import wrn
from robustlr.spec import Registry, Spec


class ModelRegistry(Registry):
    """The built-in models by name; a name with a colon is the user's (checked by import)."""

    def check(self, value: str | Mapping[str, Any] | Spec,
              context_names: tuple[str, ...] = ()) -> tuple[Spec, dict[str, Any]]:
        spec = parse_spec(value)
        if plugin.is_plugin(spec.name):
            return spec, plugin.check(spec)
        return super().check(spec, context_names)


MODELS = ModelRegistry("model")
MODELS.register("mlp", mlp)
MODELS.register("cnn", cnn)
MODELS.register("cnn1d", cnn1d)
MODELS.register("resnet18", resnet18)
MODELS.register("preact_resnet18", preact_resnet18)
MODELS.register("wrn", wrn)


def build(spec: str | Mapping[str, Any] | Spec, *, input_shape: Sequence[int], num_classes: int,
          mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    """Build the model ``spec`` names for inputs of ``input_shape`` (C, H, W) or (C, L).

    A plug-in model's factory is called and its logits' shape checked here: a factory that
    returns no ``nn.Module``, or logits that do not match ``num_classes``, is a SpecError.
    """
    input_shape = tuple(int(d) for d in input_shape)
    if len(mean) != input_shape[0] or len(std) != input_shape[0]:
        raise ValueError(f"mean and std need {input_shape[0]} values (one per input channel), "
                         f"got {len(mean)} and {len(std)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    parsed = parse_spec(spec)
    if plugin.is_plugin(parsed.name):
        return plugin.build_plugin(parsed, input_shape=input_shape, num_classes=num_classes,
                                   mean=mean, std=std)
    features, width = MODELS.build(parsed, input_shape=input_shape)
    return Classifier(Normalize(mean, std), features, nn.Linear(width, num_classes))


from robustlr.models.io import load, read_metadata, save  # noqa: E402  (io needs build)

__all__ = ["MODELS", "NORMS", "Classifier", "Normalize", "Plugged", "build", "parse_spec",
           "save", "load", "read_metadata"]
