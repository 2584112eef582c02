"""Empirical privacy: what an attacker learns about membership, beside the theoretical epsilon.

- :mod:`.membership`: the membership-inference audit and its epsilon lower bound; its names are
  this package's own (``robustlr.privacy.audit.audit`` and so on).
- :mod:`.one_run`: the one-run canary audit (Steinke, Nasr & Jagielski 2023).
- :mod:`.mia_stats`: the statistics both use (Clopper-Pearson, AUC, TPR at low FPR).
"""

from .membership import AuditResult, art_black_box_auc, audit, loss_scores

__all__ = ["AuditResult", "art_black_box_auc", "audit", "loss_scores"]
