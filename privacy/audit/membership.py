"""Empirical privacy: membership-inference audits beside the accountant's epsilon.

- Loss-threshold attack (Yeom et al. 2018, arXiv:1709.01604): an example is called a
  member when the model's loss on it is low. Score = -loss.
- ART's ``MembershipInferenceBlackBox`` (Shokri et al. 2017 style, attack model on the
  prediction vector and label), through a thin adapter.

To keep the epsilon lower bound honest, members and non-members are split in two halves:
the threshold is chosen on one, the confusion counts come from the other (an attack tuned
and scored on the same points overstates its power).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..grad_sample.modules import hooks_disabled, unwrap
from . import mia_stats


@dataclass(frozen=True)
class AuditResult:
    auc: float  # loss-threshold attack, all points
    tpr_at_1pct_fpr: float | None  # None when fewer than 100 non-members
    tpr_at_0_1pct_fpr: float | None  # None when fewer than 1000 non-members
    epsilon_lower_bound: float  # from the evaluation half, at `confidence`
    threshold: float  # on the score -loss, chosen on the selection half
    art_auc: float | None  # ART black-box attack, trained on one half, scored on the other
    n_members: int
    n_non_members: int
    confidence: float


@torch.no_grad()
def _outputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int):
    """Per-example losses and softmax probabilities, model in eval mode, hooks off."""
    was_training = model.training
    model.eval()
    losses, probs = [], []
    with hooks_disabled(model):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            logits = model(xb).double()  # float32 losses of memorised points tie at 0.0
            losses.append(nn.functional.cross_entropy(logits, yb, reduction="none"))
            probs.append(logits.softmax(dim=1))
    model.train(was_training)
    return torch.cat(losses).numpy().astype(float), torch.cat(probs).numpy()


def loss_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                batch_size: int = 512) -> np.ndarray:
    """Yeom et al.'s membership score: minus the per-example cross-entropy."""
    return -_outputs(model, x, y, batch_size)[0]


def art_black_box_auc(model: nn.Module, members, non_members, *, fit_idx, eval_idx,
                      seed: int = 0, batch_size: int = 512) -> float:
    """AUC of ART's MembershipInferenceBlackBox (random-forest attack model)."""
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
    from art.estimators.classification import PyTorchClassifier

    (xm, ym), (xn, yn) = members, non_members
    pm, pn = _outputs(model, xm, ym, batch_size)[1], _outputs(model, xn, yn, batch_size)[1]
    classifier = PyTorchClassifier(model=unwrap(model), loss=nn.CrossEntropyLoss(),
                                   input_shape=tuple(xm.shape[1:]), nb_classes=pm.shape[1])
    attack = MembershipInferenceBlackBox(classifier, input_type="prediction",
                                         attack_model_type="rf")
    np.random.seed(seed)  # ART's random forest draws from numpy's global generator
    (fm, fn), (em, en) = fit_idx, eval_idx  # (members, non-members) of each half
    ym_np, yn_np = ym.numpy(), yn.numpy()
    attack.fit(x=xm.numpy()[fm], y=ym_np[fm], test_x=xn.numpy()[fn], test_y=yn_np[fn],
               pred=pm[fm], test_pred=pn[fn])
    infer = lambda p, y: attack.infer(x=None, y=y, pred=p, probabilities=True)  # noqa: E731
    sm, sn = infer(pm[em], ym_np[em]), infer(pn[en], yn_np[en])
    return mia_stats.auc(np.asarray(sm).reshape(len(em), -1)[:, -1],
                         np.asarray(sn).reshape(len(en), -1)[:, -1])


def audit(model: nn.Module, members: tuple, non_members: tuple, *, delta: float,
          confidence: float = 0.95, art: bool = True, seed: int = 0,
          batch_size: int = 512) -> AuditResult:
    """Membership-inference audit of ``model`` on (x, y) members vs non-members."""
    if not 0 < delta < 1 or not 0 < confidence < 1:
        raise ValueError(f"delta and confidence must be in (0, 1), got {delta!r}, {confidence!r}")
    (xm, ym), (xn, yn) = members, non_members
    if min(len(ym), len(yn)) < 4:
        raise ValueError("members and non_members need at least 4 examples each")
    sm, sn = loss_scores(model, xm, ym, batch_size), loss_scores(model, xn, yn, batch_size)
    rng = np.random.default_rng(seed)
    pm, pn = rng.permutation(len(sm)), rng.permutation(len(sn))
    (fm, em), (fn, en) = np.array_split(pm, 2), np.array_split(pn, 2)
    threshold = mia_stats.best_threshold(sm[fm], sn[fn], delta=delta, confidence=confidence)
    tp, fp = int((sm[em] >= threshold).sum()), int((sn[en] >= threshold).sum())
    bound = mia_stats.epsilon_lower_bound(tp=tp, fn=len(em) - tp, fp=fp, tn=len(en) - fp,
                                          delta=delta, confidence=confidence)
    art_auc = (art_black_box_auc(model, members, non_members, fit_idx=(fm, fn),
                                 eval_idx=(em, en), seed=seed, batch_size=batch_size)
               if art else None)
    return AuditResult(auc=mia_stats.auc(sm, sn),
                       tpr_at_1pct_fpr=mia_stats.tpr_at_fpr(sm, sn, 0.01),
                       tpr_at_0_1pct_fpr=mia_stats.tpr_at_fpr(sm, sn, 0.001),
                       epsilon_lower_bound=bound, threshold=threshold, art_auc=art_auc,
                       n_members=len(sm), n_non_members=len(sn), confidence=confidence)
