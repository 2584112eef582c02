"""Report section for certified robustness (randomized smoothing, Cohen et al. 2019): certified
accuracy against the L2 radius per schedule, drawn beside the empirical L2 robust accuracy of
the base model at the same radius, and a table with the average certified radius. Certified
accuracy is a lower bound on the smoothed classifier's robustness; the empirical number is an
upper bound on the base model's. Skips itself when no trial was certified."""

from __future__ import annotations

from matplotlib.figure import Figure

from robustlr.results.report.document import Document
from robustlr.results.report.sections import percent
from robustlr.results.stats import finite, group, interval, with_arms

RADII = (0.0, 0.25, 0.5, 0.75, 1.0)


def _field(prefix: str, radius: float) -> str:
    return f"{prefix}_r{radius:g}".replace(".", "_")


def _mean(records: list[dict], field: str) -> float | None:
    values = [v for v in (finite(r.get(field)) for r in records) if v is not None]
    return sum(values) / len(values) if values else None


def certified_section(document: Document, summaries: list[dict], rows: list[dict]) -> None:
    certified = [r for r in with_arms(summaries) if finite(r.get("certified_acc_r0")) is not None]
    if not certified:
        return
    document.heading("Certified robustness (randomized smoothing)")
    sigmas = sorted({float(r["certify_sigma"]) for r in certified if r.get("certify_sigma")})
    document.text(
        "Certified accuracy of the smoothed classifier (Gaussian noise, sigma "
        f"{', '.join(f'{s:g}' for s in sigmas)}; Cohen et al. 2019) at each L2 radius: the share "
        "of certified test examples predicted correctly with a certified radius at least that "
        "large (abstentions count as wrong), a lower bound that holds with probability "
        "1 - alpha per example. Dashed: the base model's accuracy under 20-step L2 PGD at the "
        "same radius on the same examples (an upper bound on its robustness). Mean over seeds.")
    _warn_untrained(document, certified)
    groups = group(certified, ("schedule", "regime"))
    _curves(document, groups)
    header = ["schedule", "regime", "trials"] + [f"certified r={r:g}" for r in RADII] + \
        ["avg certified radius", "empirical L2 r=0.5"]
    table = []
    for (schedule, regime), runs in groups.items():
        table.append([str(schedule), str(regime), str(len(runs))]
                     + [percent([r.get(_field("certified_acc", radius)) for r in runs]) for radius in RADII]
                     + [interval([r.get("avg_certified_radius") for r in runs]).text(digits=2),
                        percent([r.get("empirical_l2_acc_r0_5") for r in runs])])
    document.table(header, table)


def _warn_untrained(document: Document, records: list[dict]) -> None:
    """Certifying a model not trained with the same noise is allowed, but say so."""
    odd = sorted({str(r["regime"]) for r in records
                  if r.get("certify_train_sigma") != r.get("certify_sigma")})
    if odd:
        document.bullets([f"Warning: {regime} was not trained with Gaussian noise of the "
                          "certified sigma (train with gaussian(sigma=...) alike); its certified "
                          "accuracy is usually near zero and says little about the schedule."
                          for regime in odd])


def _curves(document: Document, groups: dict[tuple, list[dict]]) -> None:
    regimes = list(dict.fromkeys(regime for _, regime in groups))
    figure = Figure(figsize=(max(6.0, 4.2 * len(regimes)), 3.8))
    axes = figure.subplots(1, len(regimes), squeeze=False)[0]
    for column, regime in enumerate(regimes):
        ax = axes[column]
        for (schedule, other), runs in groups.items():
            if other != regime:
                continue
            color = document.palette(str(schedule))
            certified = [_mean(runs, _field("certified_acc", r)) for r in RADII]
            ax.plot(RADII, [100 * (v or 0.0) for v in certified], marker="o", color=color,
                    label=str(schedule))
            empirical = [(r, _mean(runs, _field("empirical_l2_acc", r))) for r in RADII[1:]]
            points = [(r, 100 * v) for r, v in empirical if v is not None]
            if points:
                ax.plot(*zip(*points), linestyle="--", color=color)
        ax.set_title(f"regime: {regime}", fontsize=9)
        ax.set_xlabel("L2 radius")
        ax.set_ylabel("accuracy %")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=7)
    document.plot("certified_accuracy", figure,
                  "Certified accuracy vs L2 radius per schedule (solid) and the empirical L2 PGD "
                  "accuracy at the same radius (dashed).")
