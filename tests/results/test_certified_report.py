"""The certified-robustness report section: one curve and one table row per schedule, the
warning for a model not trained with the certified noise, and silence without certification."""

from __future__ import annotations

from robustlr.results.report import Document
from robustlr.results.report.certified import certified_section


def certified_record(schedule, regime, level, **extra):
    fields = {f"certified_acc_r{r}": level * share
              for r, share in (("0", 1.0), ("0_25", 0.8), ("0_5", 0.6), ("0_75", 0.4), ("1", 0.2))}
    fields.update({f"empirical_l2_acc_r{r}": level for r in ("0_25", "0_5", "0_75", "1")})
    return {"trial": f"{schedule}-{regime}", "schedule": schedule, "regime": regime, "seed": 0,
            "lr_scale": 1.0, "status": "ok", "avg_certified_radius": 0.4, "certify_sigma": 0.25,
            **fields, **extra}


def test_section_has_a_row_and_a_curve_per_schedule_and_warns_untrained():
    records = [certified_record(s, "gaussian(sigma=0.25)", 0.9, certify_train_sigma=0.25)
               for s in ("constant", "cosine", "onecycle")]
    records.append(certified_record("constant", "standard", 0.5))
    document = Document("t")
    certified_section(document, records, [])
    kinds = [kind for kind, _ in document.blocks]
    assert kinds[0] == "heading" and "plot" in kinds
    table = next(value for kind, value in document.blocks if kind == "table")
    assert [row[:2] for row in table.rows] == [["constant", "gaussian(sigma=0.25)"],
                                               ["cosine", "gaussian(sigma=0.25)"],
                                               ["onecycle", "gaussian(sigma=0.25)"],
                                               ["constant", "standard"]]
    assert table.rows[0][3] == "90.0" and table.rows[0][7] == "18.0"  # r=0 and r=1 in percent
    warnings = next(value for kind, value in document.blocks if kind == "bullets")
    assert len(warnings) == 1 and warnings[0].startswith("Warning: standard")
    figure = next(value for kind, value in document.blocks if kind == "plot").figure
    assert len(figure.axes) == 2  # one panel per regime


def test_section_skips_itself_without_certification():
    document = Document("t")
    certified_section(document, [{"trial": "a", "schedule": "constant", "regime": "standard",
                                  "clean_acc": 0.9}], [])
    assert document.blocks == []
