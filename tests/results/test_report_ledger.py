"""The report's privacy ledger: one table per DP trial group (entry, mechanism, epsilon, delta,
then the total), and a trial without a DP guarantee is named in words and placed at no epsilon
level. Built from generated records: nothing is trained."""

from __future__ import annotations

from robustlr.config import ReportConfig
from robustlr.privacy.ledger import Entry, Ledger
from robustlr.results.report import compose

NORMALIZATION = Entry(name="normalization", mechanism="gaussian", epsilon=0.5, delta=1e-6)


def _trial(index: int, regime: str, training: Entry, **extra) -> dict:
    ledger = Ledger((NORMALIZATION, training))
    return {"trial": f"t{index}", "schedule": "constant" if index % 2 else "cosine",
            "regime": regime, "lr_scale": 1.0, "seed": 0, "poison": "none", "filter": "none",
            "status": "ok", "clean_acc": 0.8, "val_acc": 0.8, "train_seconds": 1.0,
            "epsilon": ledger.epsilon if ledger.guaranteed else None,
            "epsilon_training": training.epsilon if ledger.guaranteed else None,
            "delta": ledger.delta, "privacy_ledger": ledger.records(),
            "dp_guarantee": ledger.guaranteed, "privacy_scope": "training_data", **extra}


def _document():
    capped = [_trial(i, "dp(target_epsilon=3)", Entry(
        name="dp_sgd", mechanism="subsampled_gaussian", epsilon=eps, delta=1e-5),
        target_epsilon=3.0) for i, eps in enumerate((2.45, 2.48))]
    shuffled = [_trial(i + 2, "dp(noise_multiplier=1.0, poisson=false)", Entry(
        name="dp_sgd", mechanism="shuffled_gaussian", epsilon=float("inf"), delta=1e-5))
        for i in range(2)]
    return compose("t", capped + shuffled, [], ReportConfig())


def _tables(document) -> dict:
    return {tuple(table.header): table.rows for kind, table in document.blocks if kind == "table"}


def test_the_ledger_table_lists_each_groups_entries_and_total():
    rows = _tables(_document())[("DP trials", "entry", "mechanism", "ε", "δ")]
    assert rows[0] == ["dp(target_epsilon=3) (2 trials)", "normalization", "gaussian", "0.5",
                       "1e-06"]
    assert rows[1] == ["", "dp_sgd", "subsampled_gaussian", "2.45–2.48", "1e-05"]
    assert rows[2] == ["", "total", "basic composition", "2.95–2.98", "1.1e-05"]
    assert rows[4][1:4] == ["dp_sgd", "shuffled_gaussian", "∞ (no guarantee)"]
    assert rows[5][1:4] == ["total", "basic composition", "∞ (no guarantee)"]


def test_a_trial_without_a_guarantee_is_named_and_placed_at_no_epsilon_level():
    document = _document()
    texts = [value for kind, value in document.blocks if kind == "text"]
    assert any(t.startswith("No DP guarantee: dp(noise_multiplier=1.0, poisson=false).")
               for t in texts)
    ranked = _tables(document)[("epsilon level", "rank", "schedule", "regime", "LR scale",
                                "seeds", "ε spent", "clean acc %", "best-epoch acc %",
                                "verdict", "status")]
    assert {row[3] for row in ranked} == {"dp(target_epsilon=3)"}
    verdict = next(value for kind, value in document.blocks if kind == "bullets")
    assert any("poisson=false), no DP guarantee" in line for line in verdict)
    assert not any("ε = 3" in line and "poisson=false" in line for line in verdict)
