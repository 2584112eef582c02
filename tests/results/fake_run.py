"""Generated trial records shaped like a real run's summary.json and epochs.csv, for report
tests that must not train anything: schedules x threat models x seeds, with known effects."""

from __future__ import annotations

import random

DEFAULT_SCHEDULES = ["constant", "step(milestones=[0.5, 0.75], gamma=0.1)", "cosine(warmup=0.05)",
                     "onecycle", "linear", "exponential(final=0.01)", "cyclic(cycles=4, min=0.1)",
                     "wsd(warmup=0.05, decay=0.2)", "inverse_sqrt", "cosine_restarts(cycles=3, mult=2)",
                     "plateau(patience=2, factor=0.2)", "schedule_free(warmup=0.05)"]
THREATS = [  # (regime, poison, filter, dp level)
    ("standard", "none", "none", None),
    ("pgd_at(eps=0.1, steps=5)", "none", "none", None),
    ("dp(target_epsilon=3.0, delta=1e-05)", "none", "none", 3.0),
    ("standard", "badnets(rate=0.05, target=0)", "none", None),
    ("standard", "badnets(rate=0.05, target=0)", "activation_clustering", None),
]


def fake_run(schedules: list[str], threats=THREATS, *, seeds: int = 3, epochs: int = 6,
             lr_scales=(1.0,), effect: dict[str, float] | None = None, rng_seed: int = 0):
    """``(summaries, rows)``; ``effect`` shifts a schedule's accuracies (fraction) so a test
    knows which schedule must lead."""
    rng = random.Random(rng_seed)
    effect = effect or {}
    summaries, rows = [], []
    for regime, poison, defence, level in threats:
        for index, schedule in enumerate(schedules):
            for scale in lr_scales:
                base = 0.9 - 0.004 * index + effect.get(schedule, 0.0) - 0.02 * abs(scale - 1)
                for seed in range(seeds):
                    noise = rng.gauss(0, 0.004)
                    trial = f"t{len(summaries)}"
                    clean = min(0.99, base + noise)
                    record = {"trial": trial, "schedule": schedule, "regime": regime,
                              "lr_scale": scale, "seed": seed, "poison": poison,
                              "filter": defence, "status": "ok", "clean_acc": clean,
                              "val_acc": clean + rng.gauss(0, 0.002),
                              "clean_acc_best": clean, "train_seconds": 2.0 + rng.random(),
                              "robust_acc": clean - 0.3 + rng.gauss(0, 0.004),
                              "robust_acc_best": clean - 0.29,
                              "monitor_robust_acc": clean - 0.35, "robust_gap": 0.01,
                              "robust_eval": "cascade pgd(eps=0.1, steps=20)",
                              "robust_examples": 359, "monitor_attack": "pgd(eps=0.1, steps=5)",
                              "monitor_examples": 200}
                    if level is not None:
                        record.update(epsilon=level * 0.98, target_epsilon=level, delta=1e-5,
                                      clean_acc=clean - 0.1)
                    if poison != "none":
                        record.update(asr=max(0.0, 0.9 - 0.5 * (defence != "none")
                                              + rng.gauss(0, 0.01) - effect.get(schedule, 0.0)),
                                      ra=0.05, backdoor_epoch=2)
                    summaries.append(record)
                    for epoch in range(1, epochs + 1):
                        share = epoch / epochs
                        row = {"trial": trial, "epoch": epoch, "lr": 0.1 * (1 - share),
                               "test_acc": record["clean_acc"] * (0.6 + 0.4 * share),
                               "monitor_robust_acc": record["monitor_robust_acc"] * share}
                        if level is not None:
                            row["epsilon"] = record["epsilon"] * share
                        if poison != "none":
                            row["asr"] = record["asr"] * share
                        rows.append(row)
    return summaries, rows
