"""The numeric fields of a trial's summary that bounds, comparisons and rankings may name,
which way each is better, and which are shares shown (and bounded) in percent.

``robust_acc`` is the trial's one headline robust accuracy (its strongest evaluation: the final
cascade when configured); ``monitor_*`` fields come from the cheap per-epoch attack on a subset
and are trajectories, never the headline."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Every numeric summary field of the README; a numeric field a run adds later is allowed too.
SUMMARY_METRICS = (
    "clean_acc", "clean_acc_best", "best_epoch", "val_acc", "val_examples", "test_examples",
    "worst_class", "worst_class_acc", "worst_class_gap", "robust_worst_class",
    "robust_worst_class_acc", "robust_worst_class_gap", "train_loss", "lr_final", "epochs",
    "steps", "planned_steps", "train_seconds", "wall_seconds", "samples_per_second",
    "robust_acc", "robust_acc_best", "robust_gap", "robust_examples", "best_robust_epoch",
    "monitor_robust_acc", "monitor_robust_acc_best", "monitor_robust_acc_max",
    "monitor_val_robust_acc", "monitor_examples", "corruption_acc", "epsilon", "epsilon_training", "delta",
    "noise_multiplier", "sample_rate", "dp_steps", "max_grad_norm", "target_epsilon",
    "max_epsilon", "mia_auc", "mia_tpr_at_1pct_fpr", "mia_tpr_at_0_1pct_fpr",
    "epsilon_lower_bound", "mia_art_auc", "mia_members", "poison_rate", "poisoned_count", "asr",
    "asr_examples", "asr_best", "ra", "backdoor_epoch", "filter_precision", "filter_recall", "filter_f1",
    "clean_removed", "removed_count", "poison_seconds",
    # weight averaging (the `averaging` dimension): the averaged weights beside the raw ones
    "avg_clean_acc", "avg_monitor_robust_acc", "avg_monitor_robust_acc_max", "avg_robust_gap",
    # reference AutoAttack (robust accuracy after each sub-attack of the final cascade)
    "autoattack_acc", "autoattack_apgd_ce_acc", "autoattack_apgd_t_acc", "autoattack_fab_t_acc",
    "autoattack_square_acc", "autoattack_apgd_dlr_acc",
    # randomized smoothing (evaluation.certify): radius r is written r0, r0_25, ..., r1
    "certified_acc_r0", "certified_acc_r0_25", "certified_acc_r0_5", "certified_acc_r0_75",
    "certified_acc_r1", "avg_certified_radius", "certified_abstain_rate",
    "empirical_l2_acc_r0_25", "empirical_l2_acc_r0_5", "empirical_l2_acc_r0_75",
    "empirical_l2_acc_r1", "certify_seconds",
    # one-run canary audit of DP trials (evaluation.privacy_audit)
    "audit_epsilon_lower", "audit_canaries", "audit_guesses", "audit_correct",
    "audit_included", "audit_confidence")

# Everything else is better higher.
LOWER_IS_BETTER = frozenset({
    "train_loss", "train_seconds", "wall_seconds", "robust_gap", "epsilon", "epsilon_training",
    "delta",
    "noise_multiplier", "mia_auc", "mia_tpr_at_1pct_fpr", "mia_tpr_at_0_1pct_fpr",
    "epsilon_lower_bound", "mia_art_auc", "asr", "asr_best", "clean_removed", "poison_seconds",
    "avg_robust_gap", "certified_abstain_rate", "certify_seconds", "audit_epsilon_lower",
    "worst_class_gap", "robust_worst_class_gap"})

# Stored as fractions in [0, 1]; the report, the gate and --rank-by bounds speak percent.
PERCENT_METRICS = frozenset({
    "clean_acc", "clean_acc_best", "val_acc", "worst_class_acc", "worst_class_gap",
    "robust_worst_class_acc", "robust_worst_class_gap", "robust_acc", "robust_acc_best", "robust_gap",
    "monitor_robust_acc", "monitor_robust_acc_best", "monitor_robust_acc_max",
    "monitor_val_robust_acc", "corruption_acc", "mia_tpr_at_1pct_fpr", "mia_tpr_at_0_1pct_fpr", "poison_rate", "asr",
    "asr_best", "ra", "filter_precision", "filter_recall", "filter_f1", "clean_removed",
    "avg_clean_acc", "avg_monitor_robust_acc", "avg_monitor_robust_acc_max", "avg_robust_gap",
    "autoattack_acc", "autoattack_apgd_ce_acc", "autoattack_apgd_t_acc", "autoattack_fab_t_acc",
    "autoattack_square_acc", "autoattack_apgd_dlr_acc", "certified_acc_r0",
    "certified_acc_r0_25", "certified_acc_r0_5", "certified_acc_r0_75", "certified_acc_r1",
    "certified_abstain_rate", "empirical_l2_acc_r0_25", "empirical_l2_acc_r0_5",
    "empirical_l2_acc_r0_75", "empirical_l2_acc_r1"})


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool, a string or NaN), else
    None: how a number read from a summary, a file or a user is taken."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def requested_epsilon(record: Mapping[str, Any]) -> float | None:
    """The epsilon a private trial was asked to stay within: its ``target_epsilon``, else its
    ``max_epsilon`` cap; None for a trial that promised none."""
    return finite(record.get("target_epsilon")) or finite(record.get("max_epsilon"))


def unit(metric: str) -> str:
    return "%" if metric in PERCENT_METRICS else ""


def from_report_units(metric: str, text: str) -> float:
    """The stored value of a bound written in the report's units: ``clean_acc=96`` (or
    ``96%``) is 0.96. A share written as a fraction (``clean_acc=0.9``) is refused rather than
    read as 0.9%: that bound would pass every trial."""
    raw = text.strip()
    percent_sign = raw.endswith("%")
    value = float(raw.removesuffix("%"))
    if not math.isfinite(value):
        raise ValueError(f"{metric}: the limit must be a finite number, got {text!r}")
    if metric not in PERCENT_METRICS:
        if percent_sign:
            raise ValueError(f"{metric} is not a percentage; give a plain number, got {text!r}")
        return value
    if not percent_sign and 0 < abs(value) < 1:
        raise ValueError(f"{metric} is in percent like the report (0-100): did you mean "
                         f"{metric}={value * 100:g}? (write {value:g}% to mean {value:g} percent)")
    return value / 100.0


# Metrics defined only for some threat models: a bound on one applies to those trials alone.
SCOPED_METRICS = {
    "poisoning": frozenset({"asr", "asr_best", "asr_examples", "ra", "backdoor_epoch",
                            "poison_rate", "poisoned_count", "poison_seconds"}),
    "filtered": frozenset({"filter_precision", "filter_recall", "filter_f1", "clean_removed",
                           "removed_count"}),
    "private": frozenset({"epsilon", "epsilon_training", "delta", "noise_multiplier",
                          "sample_rate", "dp_steps", "max_grad_norm", "target_epsilon",
                          "max_epsilon", "audit_epsilon_lower", "audit_canaries",
                          "audit_guesses", "audit_correct", "audit_included",
                          "audit_confidence"})}
SCOPE_NAMES = {"poisoning": "poisoning trials", "filtered": "trials with a poison filter",
               "private": "DP trials"}


def scope(metric: str) -> str | None:
    """The kind of trial ``metric`` is defined for (a key of SCOPED_METRICS), None for all."""
    return next((kind for kind, metrics in SCOPED_METRICS.items() if metric in metrics), None)
