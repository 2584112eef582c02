"""Models built from specs: ``"cnn(width=32)"`` or ``{name: resnet18, norm: group}``.

Every model takes inputs in [0, 1] of the dataset's ``input_shape`` and returns logits of
shape (N, num_classes). It is a :class:`Classifier`: ``normalize`` (a :class:`Normalize`
layer holding the training split's per-channel mean and std), ``features``, and ``head``, the
last layer, an ``nn.Linear``. ``norm="group"`` variants train under Opacus (DP-SGD).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from robustlr.models.cnn import cnn, cnn1d
from robustlr.models.layers import NORMS, Classifier, Normalize
from robustlr.models.mlp import mlp
from robustlr.models.resnet import resnet18
from robustlr.spec import Registry, Spec

MODELS = Registry("model")
MODELS.register("mlp", mlp)
MODELS.register("cnn", cnn)
MODELS.register("cnn1d", cnn1d)
MODELS.register("resnet18", resnet18)


def build(spec: str | Mapping[str, Any] | Spec, *, input_shape: Sequence[int], num_classes: int,
          mean: Sequence[float], std: Sequence[float]) -> Classifier:
    """Build the model ``spec`` names for inputs of ``input_shape`` (C, H, W) or (C, L)."""
    input_shape = tuple(int(d) for d in input_shape)
    if len(mean) != input_shape[0] or len(std) != input_shape[0]:
        raise ValueError(f"mean and std need {input_shape[0]} values (one per input channel), "
                         f"got {len(mean)} and {len(std)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    features, width = MODELS.build(spec, input_shape=input_shape)
    return Classifier(Normalize(mean, std), features, nn.Linear(width, num_classes))


from robustlr.models.io import load, read_metadata, save  # noqa: E402  (io needs build)

__all__ = ["MODELS", "NORMS", "Classifier", "Normalize", "build", "save", "load",
           "read_metadata"]
