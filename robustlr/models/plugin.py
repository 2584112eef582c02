"""The user's own network: ``"package.module:factory"``, ``"torchvision:<name>"`` or
``"timm:<name>"``, with keyword arguments as in any spec
(``"torchvision:resnet18(small_input=true)"``, ``{name: "mymodels:Net", width: 64}``).

The factory returns an ``nn.Module`` mapping [0, 1] inputs to logits; robustlr puts its
:class:`Normalize` layer in front (the training split's mean and std) unless the spec says
``normalize: false`` (a robustlr option, not passed to the factory). A factory that names
``num_classes`` or ``input_shape`` parameters receives them unless the spec sets them.

The penultimate features poison filters read are the input of the *head*: the last
``nn.Linear`` called in a forward pass whose output is the logits, found once by a dry run
and exposed as :attr:`Plugged.head`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from robustlr import plugins
from robustlr.models.layers import Normalize
from robustlr.spec import Spec, SpecError, parse

PREFIXES = ("torchvision", "timm")


def parse_spec(value: str | Mapping[str, Any] | Spec) -> Spec:
    """:func:`robustlr.spec.parse` with the model's kind in its messages (names with a colon,
    ``"pkg.mod:f(k=1)"``, are part of the grammar)."""
    return parse(value, kind="model")


def is_plugin(name: str) -> bool:
    return ":" in name


def _split(spec: Spec) -> tuple[str, str, dict[str, Any], bool]:
    prefix, _, target = spec.name.partition(":")
    kwargs = {key: list(value) if isinstance(value, tuple) else value for key, value in spec.params}
    normalize = kwargs.pop("normalize", True)
    if not isinstance(normalize, bool):
        raise SpecError(f"model '{spec.name}': parameter 'normalize' must be true or false, got {normalize!r}")
    return prefix, target, kwargs, normalize


def check(spec: Spec) -> dict[str, Any]:
    """Resolve the factory (an import that fails is an error now) and return its kwargs."""
    prefix, target, kwargs, _ = _split(spec)
    if prefix == "torchvision":
        from torchvision import models as zoo

        if target not in zoo.list_models():
            raise SpecError(f"model '{spec.name}': torchvision has no model {target!r} "
                            "(see torchvision.models.list_models())")
    elif prefix == "timm":
        if not _timm().is_model(target):
            raise SpecError(f"model '{spec.name}': timm has no model {target!r} (see timm.list_models())")
    else:
        factory = plugins.resolve(spec.name, field=f"model '{spec.name}'")
        names, anything = plugins.accepted(factory)
        unknown = [key for key in kwargs if key not in names and not anything]
        if unknown:
            raise SpecError(f"model '{spec.name}': unknown parameter {unknown[0]!r}; allowed: "
                            f"{', '.join(sorted(names)) or 'none'}, normalize")
    return kwargs


def _timm():
    try:
        import timm  # an optional extra: robustlr[timm]
    except ImportError:
        raise SpecError("model 'timm:...' needs the optional package timm: "
                        "pip install 'robustlr[timm]'") from None
    return timm


def _small_stem(net: nn.Module, channels: int, small: bool, name: str) -> None:
    """A ResNet-family stem for ``channels`` inputs; ``small``: 3x3 stride-1, no max-pool
    (the CIFAR stem), so 32x32 inputs are not cut to 8x8 by the first two layers."""
    conv = getattr(net, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not hasattr(net, "maxpool"):
        if small:
            raise SpecError(f"model '{name}': small_input applies to ResNet-family models "
                            "(conv1 + maxpool); pass the model's own size options instead")
        return
    if small:
        net.conv1 = nn.Conv2d(channels, conv.out_channels, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif channels != conv.in_channels:
        net.conv1 = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                              padding=conv.padding, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")


def _network(spec: Spec, input_shape: tuple[int, ...], num_classes: int) -> tuple[nn.Module, bool]:
    prefix, target, kwargs, normalize = _split(spec)
    field = f"model '{spec.name}'"
    if prefix == "torchvision":
        from torchvision import models as zoo

        small = bool(kwargs.pop("small_input", False))
        options = {"weights": None, "num_classes": num_classes, **kwargs}
        net = plugins.call(lambda **kw: zoo.get_model(target, **kw), options, {}, field=field)
        _small_stem(net, input_shape[0], small, spec.name)
    elif prefix == "timm":
        timm = _timm()
        options = {"pretrained": False, "num_classes": num_classes, "in_chans": input_shape[0], **kwargs}
        net = plugins.call(lambda **kw: timm.create_model(target, **kw), options, {}, field=field)
    else:
        factory = plugins.resolve(spec.name, field=field)
        net = plugins.call(factory, kwargs, {"num_classes": num_classes, "input_shape": input_shape},
                           field=field)
    if not isinstance(net, nn.Module):
        raise SpecError(f"model '{spec.name}': the factory returned {type(net).__name__}, not a "
                        "torch.nn.Module")
    return net, normalize


class Plugged(nn.Module):
    """``net(normalize(x))`` around the user's network; ``head`` is its logits layer (or None)."""

    def __init__(self, normalize: nn.Module, net: nn.Module, head: str | None):
        super().__init__()
        self.normalize = normalize
        self.net = net
        self.head_name = head  # a name, not a second reference: the state dict stays the user's

    @property
    def head(self) -> nn.Linear | None:
        return None if self.head_name is None else self.net.get_submodule(self.head_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def _dry_run(net: nn.Module, input_shape: tuple[int, ...], num_classes: int, name: str) -> str | None:
    """Check the logits' shape on two zero inputs; return the head's name (see module doc)."""
    called: list[tuple[str, torch.Tensor]] = []
    hooks = [module.register_forward_hook(lambda m, i, out, key=key: called.append((key, out)))
             for key, module in net.named_modules() if isinstance(module, nn.Linear)]
    modes = [(module, module.training) for module in net.modules()]
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, *input_shape))
    except Exception as error:
        raise SpecError(f"model '{name}': a forward pass on inputs of shape {input_shape} raised "
                        f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes:
            module.training = training
    if not isinstance(out, torch.Tensor) or out.shape != (2, num_classes):
        got = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SpecError(f"model '{name}': returns outputs of shape {got} per input but the data "
                        f"has {num_classes} classes; the model must return (N, {num_classes}) logits")
    heads = [key for key, value in called if isinstance(value, torch.Tensor) and value.shape == out.shape]
    return heads[-1] if heads else None


def build_plugin(spec: Spec, *, input_shape: Sequence[int], num_classes: int,
                 mean: Sequence[float], std: Sequence[float]) -> Plugged:
    input_shape = tuple(int(d) for d in input_shape)
    net, normalize = _network(spec, input_shape, num_classes)
    head = _dry_run(net, input_shape, num_classes, spec.name)
    return Plugged(Normalize(mean, std) if normalize else nn.Identity(), net, head)
