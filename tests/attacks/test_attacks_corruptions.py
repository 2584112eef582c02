"""On-the-fly common corruptions for images and 1-D signals."""

from __future__ import annotations

import pytest
import torch

from robustlr.attacks.corruptions import CORRUPTIONS, corrupt, corruption_accuracy


@pytest.mark.parametrize("shape", [(6, 3, 8, 8), (6, 1, 40)])
@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_shape_range_and_severity_order(shape, name):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    distances = []
    for severity in (1, 2, 3):
        out = corrupt(x, name, severity, generator=torch.Generator().manual_seed(1))
        assert out.shape == x.shape and out.dtype == x.dtype
        assert out.min() >= 0 and out.max() <= 1
        distances.append((out - x).abs().mean().item())
    assert 0 < distances[0] < distances[1] < distances[2]


def test_blur_keeps_constants_and_spreads_impulses():
    constant = torch.full((2, 1, 30), 0.4)
    assert torch.allclose(corrupt(constant, "gaussian_blur", 3), constant)
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[..., 4, 4] = 1.0
    blurred = corrupt(impulse, "gaussian_blur", 2)
    assert blurred[..., 4, 4] < 1 and blurred[..., 4, 5] > 0 and blurred[..., 5, 4] > 0
    assert torch.isclose(blurred.sum(), torch.tensor(1.0), atol=1e-4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="^severity must be one of 1, 2, 3"):
        corrupt(torch.rand(1, 1, 4, 4), "contrast", 4)
    with pytest.raises(ValueError, match="^name must be one of"):
        corrupt(torch.rand(1, 1, 4, 4), "fog", 1)


def test_corruption_accuracy_on_digits(digits_cnn, digits_tensors):
    _, _, x, y = digits_tensors
    a = corruption_accuracy(digits_cnn, x, y, generator=torch.Generator().manual_seed(0),
                            batch_size=128)
    b = corruption_accuracy(digits_cnn, x, y, generator=torch.Generator().manual_seed(0))
    assert a == b  # seeded noise, batching does not matter
    assert len(a) == 13 and set(a) >= {"gaussian_noise_s1", "brightness_s3", "mean"}
    by_severity = [sum(a[f"{n}_s{s}"] for n in CORRUPTIONS) / 4 for s in (1, 2, 3)]
    assert by_severity[0] >= by_severity[1] >= by_severity[2]
    assert by_severity[0] > by_severity[2]
