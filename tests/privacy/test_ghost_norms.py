"""privacy.ghost_norms: per-sample norms equal Opacus hooks-mode norms (privacy-critical).

A norm that comes out too small lets an example's gradient through unclipped, so every rule
is checked against Opacus' per-sample gradients over shapes, strides, padding, dilation,
groups and bias, on both branches of the mixed rule (Gram and instantiated).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from opacus.grad_sample import GradSampleModule
from torch import nn

from robustlr.privacy.grad_sample import ghost_norms, group_norm, pixel_gram

RTOL = 1e-5


def _hooks_norms(layer, a, g):
    sampler = GradSampleModule.GRAD_SAMPLERS[type(layer)]
    return {p: gs.flatten(1).norm(dim=1) for p, gs in sampler(layer, [a], g).items()}


def _scale(norms):
    return float(norms.max()) if norms.numel() else 1.0


# float32 rounding of a squared norm summed through a Gram matrix, relative to its terms' size
GRAM_ROUNDING = 1e-5  # measured at most 2.6e-7 over 1,500 drawn convolutions per form


def _gram_terms(layer, a, g, *, kernel: int, positions: int) -> dict:
    """Per example, a bound on the size of the terms a Gram form sums into a squared norm.

    norm^2 = sum over output positions t, t' of (u_t . u_t')(g_t . g_t'), u_t the input patch at
    t, cancels to a value far below its terms' size (sum_t |u_t| |g_t|)^2, so its rounding error
    is relative to that size, not to the norm (seen: a Conv1d 1x1 norm of 0.056 off by 1.7e-6; a
    1x1 Linear over 3 positions, norm 0.0049, off by 1.9e-6 against hooks mode).
    An input value sits in at most ``kernel`` patches: the weight's size is at most
    kernel |a|^2 |g|^2; the bias sums g over ``positions`` output positions: at most
    positions |g|^2."""
    inputs, grads = a.flatten(1).norm(dim=1) ** 2, g.flatten(1).norm(dim=1) ** 2
    terms = {layer.weight: kernel * inputs * grads}
    if layer.bias is not None:
        terms[layer.bias] = positions * grads
    return terms


def _assert_equal_norms(layer, a):
    out = layer(a)
    g = torch.randn_like(out)
    mine, reference = ghost_norms.NORM_SAMPLERS[type(layer)](layer, [a], g), _hooks_norms(layer, a, g)
    assert set(mine) == set(reference) == {p for p in layer.parameters()}
    if isinstance(layer, nn.modules.conv._ConvNd):  # (N, C, *spatial) outputs
        terms = _gram_terms(layer, a, g, kernel=math.prod(layer.kernel_size),
                            positions=math.prod(g.shape[2:]))
    elif a.dim() > 2:  # Linear on (N, T, features): a Gram form over the T positions
        terms = _gram_terms(layer, a, g, kernel=1, positions=math.prod(g.shape[1:-1]))
    else:  # 2-D inputs: robustlr's |g| |a|, a product with no sum to cancel
        terms = None
    for p, norms in reference.items():
        assert mine[p].shape == norms.shape
        if terms is None:
            torch.testing.assert_close(mine[p], norms, rtol=RTOL, atol=1e-6 * _scale(norms))
            continue
        error = (mine[p].double() ** 2 - norms.double() ** 2).abs()
        allowed = RTOL * norms.double() ** 2 + GRAM_ROUNDING * terms[p].double()
        assert (error <= allowed).all(), (mine[p], norms, error / terms[p].double())


@st.composite
def conv_cases(draw):
    dims = draw(st.sampled_from([1, 2]))
    groups = draw(st.sampled_from([1, 2, 3]))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 4))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(dims))  # users' 4x4 stride-2 convs
    stride = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    padding = draw(st.one_of(st.sampled_from(["same", "valid"]),
                             st.tuples(*[st.integers(0, 2)] * dims)))
    if padding == "same":
        stride = (1,) * dims  # torch refuses padding="same" with strides
    size = tuple(draw(st.integers(k * d + 1, 9)) for k, d in zip(kernel, dilation))
    conv = (nn.Conv1d if dims == 1 else nn.Conv2d)(
        c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
        bias=draw(st.booleans()))
    return conv, (draw(st.integers(1, 5)), c_in) + size


FORMS = ("instantiated", "gram_unfolded", "gram_pixels")


def _force(patch, form):
    """Send every convolution to one of the three ways of computing its norm."""
    patch.setattr(ghost_norms, "uses_gram", lambda **_: form != "instantiated")
    patch.setattr(pixel_gram, "cheaper", lambda *_: form == "gram_pixels")


@pytest.mark.parametrize("form", FORMS)
@settings(max_examples=40, deadline=None)
@given(case=conv_cases(), seed=st.integers(0, 2 ** 16))
# a norm of 0.056 summed from terms of size ~50, once off by 1.7e-6 in the Gram form's float32
@example(case=(nn.Conv1d(1, 1, 1, padding="same", bias=False), (2, 1, 6)), seed=127)
def test_conv_norms_equal_hooks_mode(case, seed, form):
    conv, shape = case
    torch.manual_seed(seed)
    with pytest.MonkeyPatch.context() as patch:
        _force(patch, form)
        _assert_equal_norms(conv, torch.randn(shape))


def test_pixel_gram_form_is_chosen_for_stride_one_and_unfolding_for_strided_convs():
    # multiply-adds: digits cnn's second conv and ResNet-18's layer3 conv (stride 1) take the
    # pixel Gram; ResNet-18's strided 3x3 conv into layer3 unfolds its patches
    for conv, size in ((nn.Conv2d(32, 64, 3, padding=1), 4), (nn.Conv2d(256, 256, 3, padding=1), 8),
                       (nn.Conv2d(128, 256, 3, stride=2, padding=1), 16)):
        a = torch.zeros(1, conv.in_channels, size, size)
        x, padding = ghost_norms.padded(conv, a)
        assert pixel_gram.cheaper(conv, x, conv(a), padding) == (conv.stride == (1, 1))


@pytest.mark.parametrize("form", FORMS)
def test_conv_norms_chunked_over_the_batch_equal_one_chunk(monkeypatch, form):
    _force(monkeypatch, form)
    conv, a = nn.Conv2d(3, 8, 3, padding=1), torch.randn(7, 3, 6, 6)
    g = torch.randn_like(conv(a))
    whole = ghost_norms.conv_norm_sample(conv, [a], g)[conv.weight]
    monkeypatch.setattr(ghost_norms, "MIN_CHUNK_ELEMENTS", 1)  # one example per chunk
    monkeypatch.setattr(ghost_norms, "INSTANTIATED_CHUNK_ELEMENTS", 1)
    torch.testing.assert_close(ghost_norms.conv_norm_sample(conv, [a], g)[conv.weight], whole)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_non_zero_padding_modes_give_the_true_per_sample_norm(mode, form, monkeypatch):
    # Opacus' conv grad sampler zero-pads whatever padding_mode says; these rules follow the
    # layer, so compare with autograd one example at a time instead.
    torch.manual_seed(0)
    _force(monkeypatch, form)
    conv, a = nn.Conv2d(2, 4, 3, padding=1, padding_mode=mode), torch.randn(3, 2, 5, 5)
    g = torch.randn_like(conv(a))
    norms = ghost_norms.conv_norm_sample(conv, [a], g)[conv.weight]
    for i in range(3):
        weight_grad, = torch.autograd.grad((conv(a[i:i + 1]) * g[i:i + 1]).sum(), conv.weight)
        torch.testing.assert_close(norms[i], weight_grad.norm(), rtol=RTOL, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(groups=st.sampled_from([1, 2, 4]), per_group=st.integers(1, 3), batch=st.integers(1, 4),
       spatial=st.sampled_from([(), (5,), (3, 4)]), seed=st.integers(0, 2 ** 16))
def test_group_norm_norms_equal_hooks_mode(groups, per_group, batch, spatial, seed):
    assume(per_group * math.prod(spatial) > 1)  # torch refuses a group of one value
    torch.manual_seed(seed)
    layer = nn.GroupNorm(groups, groups * per_group)
    nn.init.normal_(layer.weight)
    _assert_equal_norms(layer, torch.randn(batch, groups * per_group, *spatial))


@settings(max_examples=30, deadline=None)
@given(groups=st.sampled_from([1, 2, 4]), per_group=st.integers(1, 3), batch=st.integers(1, 4),
       spatial=st.sampled_from([(), (5,), (3, 4)]), seed=st.integers(0, 2 ** 16),
       offset=st.sampled_from([0.0, 3.0]))
def test_group_norm_samples_from_forward_statistics_equal_hooks_mode(groups, per_group, batch,
                                                                      spatial, seed, offset):
    assume(per_group * math.prod(spatial) > 1)
    torch.manual_seed(seed)
    layer = nn.GroupNorm(groups, groups * per_group)
    nn.init.normal_(layer.weight)
    x = (torch.randn(batch, groups * per_group, *spatial) + offset).requires_grad_()
    out = layer(x)
    g, x = torch.randn_like(out), x.detach()
    saved = group_norm.saved_statistics(layer, out)
    assert len(saved) == 2  # the forward's mean and rstd are found
    reference = GradSampleModule.GRAD_SAMPLERS[nn.GroupNorm](layer, [x], g)
    for activations in ([x] + saved, [x]):  # forward statistics, recomputed statistics
        mine = group_norm.group_norm_grad_sample(layer, activations, g)
        assert set(mine) == set(reference)
        for p, samples in reference.items():
            torch.testing.assert_close(mine[p], samples, rtol=RTOL, atol=1e-5)


def test_cost_rule_sends_wide_late_layers_to_the_gram_form():
    # ResNet-18 at 32x32: layer1 (32x32 positions, 64x576 weights) instantiates, layer4
    # (4x4 positions, 512x4608 weights) goes ghost
    assert not ghost_norms.uses_gram(positions=32 * 32, out_channels=64, patch=64 * 9)
    assert ghost_norms.uses_gram(positions=4 * 4, out_channels=512, patch=512 * 9)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(0, 5), features=st.integers(1, 6), outputs=st.integers(1, 4),
       positions=st.sampled_from([(), (3,)]), bias=st.booleans(), seed=st.integers(0, 2 ** 16))
@example(batch=2, features=1, outputs=1, positions=(3,), bias=False, seed=1162)  # a CI draw
def test_linear_norms_equal_hooks_mode(batch, features, outputs, positions, bias, seed):
    # 2-D inputs take robustlr's rule (|g| |a|), 3-D ones Opacus' own
    torch.manual_seed(seed)
    _assert_equal_norms(nn.Linear(features, outputs, bias=bias),
                        torch.randn(batch, *positions, features))


def test_book_keeping_keeps_the_pair_of_strided_convolutions_with_many_channels():
    # Wong et al.'s MNIST net: its second conv (16 -> 32, 4x4 stride 2 on 14x14) would hold
    # 8,192 values per example against 4,704 for (input, output gradient), and its Gram form
    # is dearer than instantiating: keep the pair, norms chunk by chunk. Its first conv and
    # Tramer & Boneh's 8x8 stride-2 conv on 1x28x28 hold their small per-sample gradients.
    cases = ((nn.Conv2d(16, 32, 4, stride=2, padding=1), 14, True),
             (nn.Conv2d(1, 16, 4, stride=2, padding=1), 28, False),
             (nn.Conv2d(1, 16, 8, stride=2, padding=2), 28, False))
    for conv, size, keeps in cases:
        a = torch.zeros(2, conv.in_channels, size, size)
        g = conv(a)
        assert not ghost_norms.conv_uses_gram(conv, g)
        assert ghost_norms.conv_keeps_pair(conv, a, g) == keeps
