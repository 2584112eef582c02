"""Randomized smoothing (Cohen et al. 2019): agreement with ART's estimator on the same noise
draws, the closed-form radius of a linear classifier, and the accuracy-at-radius bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from robustlr.attacks.certify import (
    ABSTAIN,
    Certificate,
    average_certified_radius,
    certified_accuracy,
    certify,
    lower_bound,
    predict,
    upper_bound,
)

SIGMA = 0.25


def numpy_noise(shape):
    """The draws ART makes: numpy's global generator, in the same order."""
    return torch.from_numpy(np.random.normal(size=shape)).float()


@pytest.fixture(scope="module")
def noisy_mlp(digits_tensors):
    x_train, y_train, x_test, y_test = digits_tensors
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for _ in range(8):  # Gaussian augmentation, as the gaussian regime trains
        for batch in torch.randperm(len(y_train), generator=generator).split(64):
            xb = x_train[batch] + SIGMA * torch.randn(x_train[batch].shape, generator=generator)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), y_train[batch]).backward()
            optimizer.step()
    return model.eval(), x_test[:12], y_test[:12]


def test_matches_art_on_the_same_noise(noisy_mlp):
    pytest.importorskip("statsmodels")  # ART's Clopper-Pearson bound uses it
    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    model, x, _ = noisy_mlp
    art = PyTorchRandomizedSmoothing(model=model, loss=nn.CrossEntropyLoss(), input_shape=(1, 8, 8),
                                     nb_classes=10, device_type="cpu", sample_size=50,
                                     scale=SIGMA, alpha=0.001)
    np.random.seed(3)
    art_prediction, art_radius = art.certify(x.numpy(), n=400, batch_size=1000)
    np.random.seed(3)
    ours = certify(model, x, sigma=SIGMA, n0=50, n=400, alpha=0.001, batch_size=1000,
                   noise=numpy_noise)
    assert ours.prediction.tolist() == art_prediction.tolist()
    assert np.allclose(ours.radius.numpy(), art_radius, atol=1e-9)
    assert (ours.prediction != ABSTAIN).sum() >= 6  # the comparison covers certified points

    np.random.seed(4)
    art_votes = art.predict(x.numpy(), batch_size=1000)  # one-hot rows, zeros when abstaining
    np.random.seed(4)
    ours_predict = predict(model, x, sigma=SIGMA, n=50, alpha=0.001, batch_size=1000,
                           noise=numpy_noise)
    expected = [int(row.argmax()) if row.any() else ABSTAIN for row in art_votes]
    assert ours_predict.tolist() == expected


def test_linear_classifier_radius_never_exceeds_the_true_one():
    """For f(x) = sign(w.x + b) under N(0, sigma^2 I) the smoothed classifier's exact radius is
    the distance to the hyperplane, |w.x + b| / ||w||."""
    torch.manual_seed(0)
    dim = 16
    w = torch.randn(dim)
    model = nn.Linear(dim, 2)
    with torch.no_grad():
        model.weight.copy_(torch.stack([w / 2, -w / 2]))
        center = 0.25 * w.sum()  # the hyperplane passes through x = 0.5 (every coordinate)
        model.bias.copy_(torch.stack([-center, center]))
    direction = w / w.norm()
    distances = torch.linspace(-0.45, 0.45, 31)  # true radius = |distance|, pA = Phi(d / sigma)
    x = 0.5 + distances[:, None] * direction[None, :]
    n, alpha = 2000, 0.001
    result = certify(model, x, sigma=SIGMA, n0=100, n=n, alpha=alpha, batch_size=2000, seed=1)
    for d, prediction, radius, count in zip(distances.tolist(), result.prediction.tolist(),
                                            result.radius.tolist(), result.count.tolist()):
        true = abs(d)
        if prediction == ABSTAIN:  # abstaining is allowed only where pA's lower bound < 1/2
            assert lower_bound(count, n, alpha) < 0.5
            continue
        assert prediction == (0 if d > 0 else 1)
        assert radius <= true + 1e-9
        slack = SIGMA * norm.ppf(upper_bound(count, n, alpha)) - radius
        assert true - radius <= slack + 1e-9
        assert radius == pytest.approx(SIGMA * norm.ppf(lower_bound(count, n, alpha)))
    assert (result.prediction != ABSTAIN).sum() >= 20


def test_accuracy_at_radius_counts_abstentions_as_wrong():
    result = Certificate(prediction=torch.tensor([0, 1, ABSTAIN, 2]),
                         radius=torch.tensor([0.6, 0.3, 0.0, 1.2], dtype=torch.float64),
                         count=torch.tensor([90, 80, 40, 99]))
    y = torch.tensor([0, 1, 2, 0])  # the last one is confidently wrong
    assert certified_accuracy(result, y, (0.0, 0.25, 0.5, 1.0)) == {
        0.0: 0.5, 0.25: 0.5, 0.5: 0.25, 1.0: 0.0}
    assert average_certified_radius(result, y) == pytest.approx((0.6 + 0.3) / 4)


def test_seeded_and_validated(noisy_mlp):
    model, x, _ = noisy_mlp
    first = certify(model, x[:3], sigma=SIGMA, n0=10, n=50, alpha=0.01, seed=5)
    again = certify(model, x[:3], sigma=SIGMA, n0=10, n=50, alpha=0.01, seed=5)
    assert torch.equal(first.radius, again.radius) and torch.equal(first.count, again.count)
    empty = certify(model, x[:0], sigma=SIGMA, n0=10, n=50, alpha=0.01)
    assert empty.prediction.shape == (0,)
    for bad, field in [(dict(sigma=0.0), "sigma"), (dict(n0=50), "n0"), (dict(alpha=1.0), "alpha"),
                       (dict(alpha=0.0), "alpha")]:
        params = dict(sigma=SIGMA, n0=10, n=50, alpha=0.01) | bad
        with pytest.raises(ValueError, match=field):
            certify(model, x[:1], **params)
