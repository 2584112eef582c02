"""The numeric fields of a trial's summary that bounds, comparisons and rankings may name,
and which way each is better."""

from __future__ import annotations

# Every numeric summary field of the README; a numeric field a run adds later is allowed too.
SUMMARY_METRICS = (
    "clean_acc", "clean_acc_best", "best_epoch", "val_acc", "train_loss", "lr_final", "epochs",
    "steps", "planned_steps", "train_seconds", "wall_seconds", "samples_per_second",
    "robust_acc", "robust_acc_best", "best_robust_epoch", "robust_acc_max", "robust_gap",
    "cascade_robust_acc", "cascade_best_robust_acc", "corruption_acc", "epsilon", "delta",
    "noise_multiplier", "sample_rate", "dp_steps", "max_grad_norm", "target_epsilon",
    "max_epsilon", "mia_auc", "mia_tpr_at_1pct_fpr", "mia_tpr_at_0_1pct_fpr",
    "epsilon_lower_bound", "mia_art_auc", "mia_members", "poison_rate", "poisoned_count", "asr",
    "asr_best", "ra", "backdoor_epoch", "filter_precision", "filter_recall", "filter_f1",
    "clean_removed", "removed_count", "poison_seconds")

# Everything else is better higher.
LOWER_IS_BETTER = frozenset({
    "train_loss", "train_seconds", "wall_seconds", "robust_gap", "epsilon", "delta",
    "noise_multiplier", "mia_auc", "mia_tpr_at_1pct_fpr", "mia_tpr_at_0_1pct_fpr",
    "epsilon_lower_bound", "mia_art_auc", "asr", "asr_best", "clean_removed", "poison_seconds"})
