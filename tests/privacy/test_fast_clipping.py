"""ghost_mixed and ghost_bk give the DP step of Opacus' hooks mode (privacy-critical).

For every layer type of robustlr's models (as the DP regime trains them, after
``fix_model``): the per-sample norms equal hooks-mode norms, and one DP step with the same
noise seed gives the same clipped, noised gradient, within 1e-5 relative.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robustlr import models
from robustlr.privacy import engine
from robustlr.privacy.grad_sample.modules import fix_model

FAST_MODES = ("ghost_mixed", "ghost_bk")
# ResNets take ~12 s a case (hooks mode instantiates 11M parameters per example): slow;
# their layer types (bias-free, strided and 1x1 convs, GroupNorm) are in the fast cases
# and in the property tests of test_ghost_norms.py
_SLOW = pytest.mark.slow
MODEL_CASES = [("mlp(norm=group)", (1, 6, 6)), ("cnn", (1, 8, 8)), ("cnn", (3, 12, 12)),
               ("cnn1d(norm=group)", (1, 40)), ("resnet_layers", (3, 8, 8)),
               pytest.param("resnet18", (3, 8, 8), marks=_SLOW)]
MODEL_CASES += [pytest.param(name, (3, 8, 8), marks=_SLOW) for name in models.MODELS.names()
                if "preact" in name]
# users' networks as the DP benchmark passes them (strided convs, max-pool, tanh)
USER_MODELS = Path(__file__).resolve().parents[2] / "benchmarks" / "user_models.py"
MODEL_CASES += [(f"user_models:{name}", (1, 28, 28)) for name in ("tanh_cnn", "relu_mnist")]


def _user_factory(name: str):
    spec = importlib.util.spec_from_file_location("user_models", USER_MODELS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _resnet_layers(channels: int) -> nn.Module:
    """ResNet-18's layer types in small: bias-free 3x3 and strided 1x1 convs, GroupNorm."""
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1, bias=False), nn.GroupNorm(2, 8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.GroupNorm(4, 16), nn.ReLU(),
        nn.Conv2d(16, 16, 1, stride=2, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 5))


def _model(spec, shape):
    torch.manual_seed(0)
    if spec == "resnet_layers":
        return _resnet_layers(shape[0])
    if spec.startswith("user_models:"):
        return _user_factory(spec.partition(":")[2])(num_classes=5)
    model = models.build(spec, input_shape=shape, num_classes=5, mean=[0.4] * shape[0],
                         std=[0.3] * shape[0])
    return fix_model(model)[0]


def _dp_gradient(model, x, y, mode, *, sigma, clip):
    """Noised gradient of one DP step (read before the parameter update) and the norms."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = TensorDataset(x, y) if len(y) else TensorDataset(x.new_zeros(1, *x.shape[1:]), y.new_zeros(1))
    private = engine.make_private(
        module=model, optimizer=optimizer, noise_multiplier=sigma, max_grad_norm=clip,
        data_loader=DataLoader(data, batch_size=max(1, len(y))),
        poisson_sampling=False, grad_sample_mode=mode,
        noise_generator=torch.Generator().manual_seed(7))
    private.module.train()
    private.optimizer.zero_grad()
    private.criterion(private.module(x), y).backward()
    if mode == "hooks":
        norms = torch.stack([p.grad_sample.flatten(1).norm(dim=1)
                             for p in model.parameters()]).norm(dim=0)
    else:
        norms = private.module.get_norm_sample() if mode != "ghost_bk" else \
            private.module.per_sample_gradient_norms
    private.optimizer.pre_step()  # clip (hooks), noise and scale, as step() does
    return [p.grad.detach().clone() for p in model.parameters()], norms


def _assert_close(actual, expected):
    """Equal within 1e-5 relative to the gradient's scale (a conv bias before GroupNorm has
    a gradient of exactly zero in exact arithmetic, rounding noise in floats)."""
    scale = max(float(b.abs().max()) for b in expected)
    for a, b in zip(actual, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("spec,shape", MODEL_CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("mode", FAST_MODES)
def test_one_dp_step_equals_hooks_mode(spec, shape, mode):
    base = _model(spec, shape)
    x, y = torch.rand(6, *shape), torch.arange(6) % 5
    for sigma, clip in ((0.0, 0.05), (1.0, 0.05)):  # clipping binds; without, then with noise
        reference, ref_norms = _dp_gradient(copy.deepcopy(base), x, y, "hooks", sigma=sigma,
                                            clip=clip)
        grads, norms = _dp_gradient(copy.deepcopy(base), x, y, mode, sigma=sigma, clip=clip)
        torch.testing.assert_close(norms, ref_norms, rtol=1e-5, atol=0)
        assert bool((ref_norms > clip).all())  # so the clipping factors are all exercised
        _assert_close(grads, reference)


def _pair(mode, model, x, y, *, clip=0.5):
    return _dp_gradient(model, x, y, mode, sigma=0.0, clip=clip)[0]


class _Tied(nn.Module):
    """One Linear applied twice and a weight shared by two layers."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 3)
        self.c = nn.Linear(4, 3)
        self.c.weight = self.b.weight

    def forward(self, x):
        h = torch.tanh(self.a(torch.tanh(self.a(x))))
        return self.b(h) + self.c(h * h)


def test_book_keeping_handles_repeated_and_shared_layers_like_hooks_mode():
    torch.manual_seed(0)
    model, x, y = _Tied(), torch.randn(5, 4), torch.arange(5) % 3
    _assert_close(_pair("ghost_bk", copy.deepcopy(model), x, y), _pair("hooks", model, x, y))


def test_book_keeping_linear_on_4d_inputs_falls_back_to_instantiated_gradients():
    # Opacus' Linear norm rule covers 2-D and 3-D inputs only
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Flatten(), nn.Linear(2 * 5 * 4, 3))
    x, y = torch.randn(4, 2, 5, 3), torch.arange(4) % 3
    _assert_close(_pair("ghost_bk", copy.deepcopy(model), x, y), _pair("hooks", model, x, y))


def test_book_keeping_loss_arithmetic_keeps_the_single_pass():
    torch.manual_seed(0)
    model, x, y = nn.Sequential(nn.Linear(4, 3)), torch.randn(6, 4), torch.arange(6) % 3
    reference = copy.deepcopy(model)
    private = engine.make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        noise_multiplier=0.0, max_grad_norm=1e6, poisson_sampling=False,
        data_loader=DataLoader(TensorDataset(x, y), batch_size=6), grad_sample_mode="ghost_bk")
    loss = private.criterion(private.module(x), y)
    combined = 0.5 * loss + loss / 2 - 0.0
    assert type(combined) is type(loss)
    combined.backward()
    nn.functional.cross_entropy(reference(x), y).backward()
    for p, q in zip(model.parameters(), reference.parameters()):  # no clipping: sum = 6 * mean
        torch.testing.assert_close(p.grad, 6 * q.grad, rtol=1e-5, atol=1e-6)


class _InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x).mul_(2)


def test_book_keeping_refuses_a_layer_output_modified_in_place():
    x, y = torch.randn(4, 4), torch.arange(4) % 3
    # its output gradient would be that of the modified tensor: autograd refuses the change
    with pytest.raises(RuntimeError, match="view and is being modified inplace"):
        _pair("ghost_bk", _InPlace(), x, y)


def test_mode_check_names_the_layer_and_the_modes_that_support_it():
    model = nn.Sequential(nn.Linear(4, 4), nn.Bilinear(4, 4, 2))
    problem = engine.check_grad_sample_mode(model, "ew")
    assert problem == ("grad_sample_mode 'ew' does not support layer '1' (Bilinear); modes that "
                       "do: ghost, hooks, functorch, ghost_mixed, ghost_bk")
    assert engine.check_grad_sample_mode(model, "ghost_bk") is None
    tied = _Tied()
    assert "layer 'b' (Linear) (its parameters are shared with another layer); modes that do: " \
        "hooks, functorch, ghost_bk" in engine.check_grad_sample_mode(tied, "ghost_mixed")
    assert "must be one of" in engine.check_grad_sample_mode(model, "magic")


def test_every_mode_supports_every_layer_of_robustlrs_models():
    for spec, shape in [("mlp(norm=group)", (1, 6, 6)), ("cnn", (3, 8, 8)),
                        ("cnn1d(norm=group)", (1, 40)), ("resnet18", (3, 8, 8))]:
        model = _model(spec, shape)
        for mode in engine.GRAD_SAMPLE_MODES:
            assert engine.check_grad_sample_mode(model, mode) is None, (spec, mode)


@pytest.mark.parametrize("mode", FAST_MODES)
def test_an_empty_poisson_batch_gives_the_noise_of_hooks_mode(mode):
    base = _model("cnn", (1, 8, 8))
    x, y = torch.rand(0, 1, 8, 8), torch.zeros(0, dtype=torch.int64)
    reference, _ = _dp_gradient(copy.deepcopy(base), x, y, "hooks", sigma=1.0, clip=1.0)
    grads, norms = _dp_gradient(copy.deepcopy(base), x, y, mode, sigma=1.0, clip=1.0)
    assert norms.shape == (0,)
    _assert_close(grads, reference)


def test_book_keeping_refuses_a_plain_backward_through_the_model():
    torch.manual_seed(0)
    model, x, y = nn.Sequential(nn.Linear(4, 3)), torch.randn(6, 4), torch.arange(6) % 3
    private = engine.make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        noise_multiplier=0.0, max_grad_norm=1.0, poisson_sampling=False,
        data_loader=DataLoader(TensorDataset(x, y), batch_size=6), grad_sample_mode="ghost_bk")
    with pytest.raises(RuntimeError, match="backward pass outside the DP loss"):
        nn.functional.cross_entropy(private.module(x), y).backward()
    private.criterion(private.module(x), y).backward()  # the next real step still works
    assert all(p.grad is not None for p in model.parameters())
