"""privacy.audit: statistics at known points, an overfit model leaks, a DP run stays bounded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robustlr.privacy import engine, epsilon
from robustlr.privacy.audit import audit, loss_scores
from robustlr.privacy.audit.mia_stats import auc, clopper_pearson, epsilon_lower_bound, tpr_at_fpr


def test_clopper_pearson_matches_beta_quantiles():
    lo, hi = clopper_pearson(7, 20, 0.95)
    assert lo == pytest.approx(stats.beta.ppf(0.025, 7, 14))
    assert hi == pytest.approx(stats.beta.ppf(0.975, 8, 13))
    assert clopper_pearson(0, 10, 0.95) == pytest.approx((0.0, 1 - 0.025 ** 0.1))
    with pytest.raises(ValueError):
        clopper_pearson(3, 2)


def test_epsilon_lower_bound_formula():
    tp, fn, fp, tn, delta = 900, 100, 10, 990, 1e-5
    fpr_hi, fnr_hi = clopper_pearson(fp, 1000)[1], clopper_pearson(fn, 1000)[1]
    expected = max(math.log((1 - delta - fnr_hi) / fpr_hi), math.log((1 - delta - fpr_hi) / fnr_hi))
    assert epsilon_lower_bound(tp=tp, fn=fn, fp=fp, tn=tn, delta=delta) == pytest.approx(expected)
    assert epsilon_lower_bound(tp=50, fn=50, fp=50, tn=50, delta=delta) == 0.0  # a coin flip


def test_random_scores_give_chance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=3000), rng.normal(size=3000)
    assert auc(a, b) == pytest.approx(0.5, abs=0.03)
    assert tpr_at_fpr(a, b, 0.01) == pytest.approx(0.01, abs=0.01)
    assert tpr_at_fpr(a[:50], b[:50], 0.01) is None  # too few non-members for 1% FPR
    assert auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))


def test_overfit_model_leaks_membership(digits_tensors):
    x_train, _, x_test, _ = digits_tensors
    # Random labels: only memorisation fits them, so members and non-members separate.
    # (With true labels this MLP generalises and the loss attack only reaches AUC ~0.55.)
    labels = torch.randint(0, 10, (400,), generator=torch.Generator().manual_seed(0))
    members, non_members = (x_train[:200], labels[:200]), (x_test[:200], labels[200:])
    model = _mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):  # memorise 200 digits (full batch)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(members[0]), members[1]).backward()
        optimizer.step()
    result = audit(model.eval(), members, non_members, delta=1e-5)
    assert result.auc > 0.9 and result.epsilon_lower_bound > 0.5
    assert result.tpr_at_1pct_fpr is not None and result.tpr_at_0_1pct_fpr is None
    assert result.art_auc is not None and 0.0 <= result.art_auc <= 1.0
    assert result.epsilon_lower_bound >= 0.0 and result.n_members == 200


def test_dp_run_lower_bound_stays_below_the_accountant(digits_tensors):
    x_train, y_train, x_test, y_test = digits_tensors
    members, non_members = (x_train[:256], y_train[:256]), (x_test[:256], y_test[:256])
    model = _mlp()
    loader = DataLoader(TensorDataset(*members), batch_size=32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    private = engine.make_private(module=model, optimizer=optimizer, data_loader=loader,
                                  noise_multiplier=1.0, max_grad_norm=1.0)
    steps = 0
    for _ in range(5):
        for xb, yb in private.data_loader:
            private.optimizer.zero_grad()
            private.criterion(private.module(xb), yb).backward()
            private.optimizer.step()
            steps += 1
    spent = epsilon(sample_rate=32 / 256, noise_multiplier=1.0, steps=steps, delta=1e-5)
    result = audit(private.module, members, non_members, delta=1e-5, art=False)
    assert result.epsilon_lower_bound <= spent
    assert 0.3 < result.auc < 0.7


class _ScoreModel(nn.Module):
    """Logits (0, x): the loss on label 0 is softplus(x), so each input sets its own score."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), x], dim=1)


def _audit_spying(monkeypatch, xm, xn):
    from robustlr.privacy.audit import mia_stats

    seen = []
    real = mia_stats.best_threshold

    def spy(member_scores, non_member_scores, **kwargs):
        seen.append((np.array(member_scores), np.array(non_member_scores)))
        return real(member_scores, non_member_scores, **kwargs)

    monkeypatch.setattr(mia_stats, "best_threshold", spy)
    zeros = lambda x: torch.zeros(len(x), dtype=torch.int64)  # noqa: E731
    result = audit(_ScoreModel(), (xm, zeros(xm)), (xn, zeros(xn)), delta=1e-5, art=False)
    return result, seen


def test_the_threshold_is_chosen_on_the_half_it_is_not_scored_on(monkeypatch):
    # Members mostly score high (low loss): a threshold tuned on the points it counts would
    # claim more than one chosen on the other half
    rng = np.random.default_rng(0)
    xm = torch.tensor(rng.normal(-1.0, 1.0, size=(200, 1)))
    xn = torch.tensor(rng.normal(1.0, 1.0, size=(200, 1)))
    result, seen = _audit_spying(monkeypatch, xm, xn)
    assert len(seen) == 1, "the threshold must be chosen once, by best_threshold on one half"
    sm = loss_scores(_ScoreModel(), xm, torch.zeros(200, dtype=torch.int64))
    sn = loss_scores(_ScoreModel(), xn, torch.zeros(200, dtype=torch.int64))
    assert len(np.unique(np.concatenate([sm, sn]))) == 400
    chosen_m = np.isin(sm, seen[0][0])
    chosen_n = np.isin(sn, seen[0][1])
    assert chosen_m.sum() == 100 and chosen_n.sum() == 100  # one half of each, the other unseen
    tp = int((sm[~chosen_m] >= result.threshold).sum())
    fp = int((sn[~chosen_n] >= result.threshold).sum())
    assert result.epsilon_lower_bound == pytest.approx(epsilon_lower_bound(
        tp=tp, fn=100 - tp, fp=fp, tn=100 - fp, delta=1e-5))
    # the scored half can change at will without moving the threshold
    xm2, xn2 = xm.clone(), xn.clone()
    xm2[torch.from_numpy(~chosen_m)] -= 5.0
    xn2[torch.from_numpy(~chosen_n)] += 5.0
    again, _ = _audit_spying(monkeypatch, xm2, xn2)
    assert again.threshold == result.threshold
    assert again.epsilon_lower_bound > result.epsilon_lower_bound
