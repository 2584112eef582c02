"""The model registry and the one way a model is built from its spec: a built-in name
(a factory registered with ``@MODELS.register("name")`` in a module of this package) or a
plug-in (``"pkg.mod:factory"``, ``"torchvision:<name>"``, ``"timm:<name>"``; see :mod:`.plugin`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from robustlr.models.layers import Classifier, Normalize
from robustlr.models.plugin import build_plugin, is_plugin, parse_spec
from robustlr.models.plugin import check as check_plugin
from robustlr.spec import Registry, Spec


class ModelRegistry(Registry):
    """The built-in models by name; a name with a colon is the user's (checked by import)."""

    def check(self, value: str | Mapping[str, Any] | Spec,
              context_names: tuple[str, ...] = ()) -> tuple[Spec, dict[str, Any]]:
        spec = parse_spec(value)
        if is_plugin(spec.name):
            return spec, check_plugin(spec)
        return super().check(spec, context_names)


MODELS = ModelRegistry("model")


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
    if is_plugin(parsed.name):
        return build_plugin(parsed, input_shape=input_shape, num_classes=num_classes,
                                   mean=mean, std=std)
    features, width = MODELS.build(parsed, input_shape=input_shape)
    return Classifier(Normalize(mean, std), features, nn.Linear(width, num_classes))
