"""The Python API for notebooks: run an audit and read its results as pandas DataFrames.

    >>> import robustlr
    >>> run = robustlr.open("runs/default")          # doctest: +SKIP
    >>> run.trials[["schedule", "regime", "clean_acc", "robust_acc"]]  # doctest: +SKIP

Everything is read from the run folder's database (``results.sqlite``), the one source the
CLI's report, gate and compare trust; ``summary.json`` and ``epochs.csv`` are its exports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustlr import config as config_module
from robustlr import experiment
from robustlr.errors import InputError
from robustlr.results.report.threats import split
from robustlr.results.report.verdict import judge
from robustlr.results.store import Store
from robustlr.runs.folder import DATABASE, rebuild_report, run_in_folder

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

CHECKPOINTS = ("model", "best", "last")


def _config(config: str | Path | Mapping[str, Any] | config_module.ExperimentConfig
            ) -> config_module.ExperimentConfig:
    if isinstance(config, config_module.ExperimentConfig):
        return config
    if isinstance(config, Mapping):
        return experiment.from_mapping(config)
    if isinstance(config, (str, Path)):
        return experiment.load(config)
    raise InputError(f"config: expected a path, a mapping or an ExperimentConfig, got "
                     f"{type(config).__name__}")


def run(config: str | Path | Mapping[str, Any] | config_module.ExperimentConfig, *,
        out: str | Path | None = None, workers: int | None = None,
        progress: bool = True, save_models: bool = False) -> Run:
    """Run the grid ``config`` describes (a YAML path, a mapping or a config) into ``out``
    (default: ``runs/<name>-<time>``) and return it; like ``robustlr run``. Bad input raises
    :class:`robustlr.errors.InputError` with the CLI's one-line message."""
    from robustlr.runs.grid_runner import default_workers

    run_dir = run_in_folder(_config(config), out=Path(out) if out is not None else None,
                      workers=default_workers() if workers is None else workers,
                      show_progress=progress, save_models=save_models)
    return Run(run_dir)


def open(run_dir: str | Path) -> Run:  # noqa: A001 - robustlr.open mirrors the builtin on purpose
    """A finished (or partly finished) run folder."""
    path = Path(run_dir)
    if not (path / DATABASE).is_file():
        raise InputError(f"run_dir: {path} is not a robustlr run folder (no {DATABASE})")
    return Run(path)


@dataclass(frozen=True)
class Run:
    """One run folder. Each property reads the database afresh (a run may still be going)."""

    path: Path

    def _read(self, what: str) -> Any:
        store = Store(self.path / DATABASE)
        try:
            return store.trials() if what == "trials" else store.epochs()
        finally:
            store.close()

    @property
    def summaries(self) -> list[dict[str, Any]]:
        """The finished trials' summary records, as summary.json holds them."""
        return [summary for _, _, summary in self._read("trials") if summary is not None]

    @property
    def trials(self) -> pd.DataFrame:
        """One row per registered trial: its summary's fields (shares as fractions in [0, 1],
        as summary.json stores them), with ``trial`` and ``status`` for every row."""
        import pandas as pd

        rows = [{**(summary or {}), "trial": trial, "status": status}
                for trial, status, summary in self._read("trials")]
        return pd.DataFrame(rows)

    @property
    def epochs(self) -> pd.DataFrame:
        """One row per trial and epoch, as epochs.csv holds them."""
        import pandas as pd

        return pd.DataFrame(self._read("epochs"))

    @property
    def ledger(self) -> pd.DataFrame:
        """The privacy ledger of every DP trial: one row per (trial, entry), with the entry's
        mechanism, epsilon and delta (empty without DP trials)."""
        import pandas as pd

        rows = [{"trial": summary.get("trial"), "schedule": summary.get("schedule"),
                 "seed": summary.get("seed"), **entry}
                for summary in self.summaries for entry in summary.get("privacy_ledger") or []]
        return pd.DataFrame(rows, columns=None if rows else
                            ["trial", "schedule", "seed", "name", "mechanism", "epsilon", "delta",
                             "detail"])

    @property
    def verdicts(self) -> pd.DataFrame:
        """The report's ranking per threat model: one row per schedule (and LR scale), leader
        first, with the primary metric's seed mean and 95% interval and whether it is tied
        with the leader."""
        import pandas as pd

        rows = []
        for threat, records in split(self.summaries).items():
            judged = judge(threat, records)
            for rank, entry in enumerate(judged.entries, start=1):
                primary = entry.means[threat.primary]
                rows.append({"threat": threat.name, "kind": threat.kind, "rank": rank,
                             "schedule": entry.schedule, "label": entry.label,
                             "metric": threat.primary, "mean": primary.mean,
                             "low": primary.low, "high": primary.high, "seeds": primary.n,
                             "tied_with_leader": rank == 1 or judged.tied(entry),
                             "p_holm": None if math.isnan(entry.p_holm) else entry.p_holm})
        return pd.DataFrame(rows)

    def report(self) -> Path:
        """Rewrite the exports and the report from the database; returns report.html."""
        rebuild_report(self.path)
        return self.path / "report.html"

    def model(self, trial_id: str, which: str = "model", *,
              trust: Iterable[str] = ()) -> nn.Module:
        """A trial's saved model (``model``: the final weights, with ``--save-models``) or
        checkpoint (``best``/``last``, with ``train.checkpoints``), in eval mode. A user model
        factory the checkpoint names is imported only if ``trust`` names it (as
        :func:`robustlr.models.load`)."""
        from robustlr import models

        if which not in CHECKPOINTS:
            raise InputError(f"which: must be one of {', '.join(CHECKPOINTS)}, got {which!r}")
        path = self.path / "trials" / trial_id / f"{which}.pt"
        if not path.is_file():
            raise InputError(f"trial_id: no {which}.pt for trial {trial_id!r} in {self.path} "
                             "(models are saved with --save-models, checkpoints with "
                             "train.checkpoints)")
        return models.load(path, trust=trust).eval()
