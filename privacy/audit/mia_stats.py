"""Statistics for membership-inference audits: ROC summaries and epsilon lower bounds.

An (epsilon, delta)-DP mechanism bounds every membership test: FPR + e^eps * FNR >= 1 - delta
and FNR + e^eps * FPR >= 1 - delta (Kairouz et al. 2015). An attack that reaches a given
FPR/FNR therefore proves ``eps >= log((1 - delta - FNR) / FPR)`` (and the symmetric form).
With finitely many trials the rates are estimated, so the bound uses Clopper-Pearson upper
confidence limits on both (Jagielski et al. 2020, arXiv:2006.07709; Nasr et al. 2021,
arXiv:2101.04535), which makes it hold with the stated confidence.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided exact binomial interval (Clopper & Pearson 1934) for a proportion."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got {successes}/{trials}")
    alpha = 1 - confidence
    lo = 0.0 if successes == 0 else stats.beta.ppf(alpha / 2, successes, trials - successes + 1)
    hi = 1.0 if successes == trials else stats.beta.ppf(1 - alpha / 2, successes + 1,
                                                        trials - successes)
    return float(lo), float(hi)


def epsilon_lower_bound(*, tp: int, fn: int, fp: int, tn: int, delta: float,
                        confidence: float = 0.95) -> float:
    """Epsilon lower bound (>= 0) implied by one attack's confusion counts."""
    fpr_hi = clopper_pearson(fp, fp + tn, confidence)[1]
    fnr_hi = clopper_pearson(fn, fn + tp, confidence)[1]
    bounds = [0.0]
    for num_rate, den_rate in ((fnr_hi, fpr_hi), (fpr_hi, fnr_hi)):
        if 1 - delta - num_rate > 0:
            bounds.append(math.log((1 - delta - num_rate) / den_rate))
    return max(bounds)


def auc(member_scores: np.ndarray, non_member_scores: np.ndarray) -> float:
    """ROC AUC via the Mann-Whitney U statistic (ties count one half)."""
    m, n = len(member_scores), len(non_member_scores)
    ranks = stats.rankdata(np.concatenate([member_scores, non_member_scores]))
    return float((ranks[:m].sum() - m * (m + 1) / 2) / (m * n))


def tpr_at_fpr(member_scores: np.ndarray, non_member_scores: np.ndarray,
               max_fpr: float) -> float | None:
    """Best TPR with FPR <= ``max_fpr`` ("score >= t" is "member"); None if too few negatives."""
    if len(non_member_scores) * max_fpr < 1:
        return None  # the smallest non-zero FPR would already exceed max_fpr
    allowed = int(math.floor(max_fpr * len(non_member_scores)))
    negatives = np.sort(non_member_scores)[::-1]
    # A threshold strictly above the (allowed+1)-th highest negative passes <= allowed negatives.
    cut = negatives[allowed] if allowed < len(negatives) else -np.inf
    return float(np.mean(member_scores > cut))


def best_threshold(member_scores: np.ndarray, non_member_scores: np.ndarray, *,
                   delta: float, confidence: float) -> float:
    """Threshold maximising the epsilon lower bound on this (selection) half."""
    candidates = np.unique(np.concatenate([member_scores, non_member_scores]))
    if len(candidates) > 512:  # the bound is smooth in the threshold: quantiles suffice
        candidates = np.quantile(candidates, np.linspace(0, 1, 512))
    best, best_t = -1.0, float(candidates[0])
    for t in candidates:
        tp = int((member_scores >= t).sum())
        fp = int((non_member_scores >= t).sum())
        bound = epsilon_lower_bound(tp=tp, fn=len(member_scores) - tp, fp=fp,
                                    tn=len(non_member_scores) - fp, delta=delta,
                                    confidence=confidence)
        if bound > best:
            best, best_t = bound, float(t)
    return best_t
