"""Copy a run into MLflow: one experiment per grid name, one parent run per run folder, one
nested child run per trial (params, per-epoch metrics with step=epoch, summary metrics), and
the report as artifacts of the parent.

The run folder stays the source of truth: an MLflow error while logging is a warning and the
grid goes on; only a tracking URI that cannot be opened at the start is an error. The default
store is ``sqlite:///mlflow.db`` in the current directory, with artifacts in ``mlartifacts/``
beside the database file. The parent's id is kept in ``RUN_DIR/mlflow_run_id``, so
``--resume`` adds the remaining trials to the same parent run.
"""

from __future__ import annotations

import logging
import re
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from robustlr.config import ExperimentConfig
from robustlr.errors import InputError
from robustlr.grid import spec_text
from robustlr.records import finite
from robustlr.results.export import published

log = logging.getLogger("robustlr")

DEFAULT_URI = "sqlite:///mlflow.db"
RUN_ID_FILE = "mlflow_run_id"
REPORT_FILES = ("report.html", "report.md", "summary.json", "epochs.csv", "config.yaml")
IMAGES = (".png", ".svg", ".jpg", ".jpeg", ".pdf")


class TrackingError(InputError):
    """The tracking store cannot be used; one line naming --tracking-uri (exit 2)."""


def _now() -> int:
    return int(time.time() * 1000)


def _name(key: str) -> str:
    """A metric or param name MLflow accepts everywhere (no colon: Windows forbids it; no slash
    or leading dot: names may become file paths)."""
    name = re.sub(r"[^\w.\- ]", "_", key)[:250]
    return "_" + name[:249] if not name or name.startswith(".") else name


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of a local SQLite store go beside its database file, not into MLflow's
    default ./mlruns under whatever directory the run happened to start in."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return (Path(path).resolve().parent / "mlartifacts" / experiment).as_uri()


def _probe(uri: str) -> None:
    """MLflow retries an unreachable server for minutes; one short request fails at once."""
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10).close()
    except urllib.error.HTTPError:
        return  # it answered: authentication and routing are for MLflow to judge
    except OSError as error:  # URLError, timeouts
        reason = getattr(error, "reason", error)
        if not isinstance(reason, ssl.SSLError):  # TLS settings are MLflow's too
            raise TrackingError(f"--tracking-uri: cannot reach {uri}: {_one_line(reason)}") from None


def connect(uri: str | None):
    """An MlflowClient bound to ``uri`` (default DEFAULT_URI), checked with one request.

    Explicit clients keep robustlr out of MLflow's global state (active run, tracking URI)."""
    from mlflow.tracking import MlflowClient

    uri = uri or DEFAULT_URI
    if uri.startswith(("http://", "https://")):
        _probe(uri)
    try:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as error:  # MLflow raises many types for a bad store
        raise TrackingError(f"--tracking-uri: cannot open the MLflow store {uri}: "
                            f"{_one_line(error)}") from None
    return client


class MlflowTracker:
    """Receives each trial finished in this session, then the report (see ``folder.run_in_folder``)."""

    def __init__(self, client, uri: str, run_dir: Path, config: ExperimentConfig):
        self.client, self.ended = client, False
        self.config_params = {
            "model": spec_text(config.model), "dataset": config.data.name,
            "epochs": config.train.epochs, "batch_size": config.train.batch_size,
            "base_lr": config.train.lr, "optimizer": config.train.optimizer}
        self.parent = self._reuse(run_dir) or self._start(uri, run_dir, config)
        self.experiment_id = self.client.get_run(self.parent).info.experiment_id

    def _reuse(self, run_dir: Path) -> str | None:
        """The parent of an earlier session of this run folder, running again."""
        path = run_dir / RUN_ID_FILE
        if not path.is_file():
            return None
        run_id = path.read_text().strip()
        try:
            run = self.client.get_run(run_id)
        except Exception:
            run = None
        if run is None or run.info.lifecycle_stage != "active":
            log.warning("mlflow: parent run %s of %s is not in this store; starting a new one",
                        run_id, run_dir)
            return None
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def _start(self, uri: str, run_dir: Path, config: ExperimentConfig) -> str:
        experiment = self.client.get_experiment_by_name(config.name)
        if experiment is None:
            try:
                experiment_id = self.client.create_experiment(
                    config.name, artifact_location=_artifact_location(uri, config.name))
            except Exception:  # created meanwhile by another run of the same grid
                experiment_id = self.client.get_experiment_by_name(config.name).experiment_id
        elif experiment.lifecycle_stage != "active":
            raise TrackingError(f"--tracking-uri: experiment {config.name!r} is deleted in "
                                f"{uri}; restore it (mlflow experiments restore) or rename the grid")
        else:
            experiment_id = experiment.experiment_id
        run = self.client.create_run(experiment_id, run_name=run_dir.name,
                                     tags={"robustlr.run_dir": str(run_dir.resolve())})
        self._log(run.info.run_id, params=self.config_params)
        (run_dir / RUN_ID_FILE).write_text(run.info.run_id + "\n")
        return run.info.run_id

    def _log(self, run_id: str, *, metrics=(), params=None, tags=None) -> None:
        from mlflow.entities import Param, RunTag

        self.client.log_batch(
            run_id, metrics=list(metrics),
            params=[Param(_name(k), str(v)[:6000]) for k, v in (params or {}).items()],
            tags=[RunTag(k, str(v)[:8000]) for k, v in (tags or {}).items()])

    def trial_finished(self, trial_id: str, summary: dict[str, Any],
                       epochs: list[dict[str, Any]]) -> None:
        (summary,), epochs = published([summary], epochs)  # what the exports publish
        try:
            self._log_trial(trial_id, summary, epochs)
        except Exception as error:  # the run folder holds the trial; MLflow only a copy
            log.warning("mlflow: trial %s was not logged: %s", trial_id, _one_line(error))

    def _log_trial(self, trial_id: str, summary: dict[str, Any],
                   epochs: list[dict[str, Any]]) -> None:
        from mlflow.entities import Metric

        described = {k: summary.get(k) for k in ("trial", "schedule", "regime", "lr_scale",
                                                  "seed", "poison", "filter") if k in summary}
        status = summary.get("status", "failed")
        wall = finite(summary.get("wall_seconds"))
        run = self.client.create_run(
            self.experiment_id, run_name=trial_id,
            start_time=_now() - int(1000 * wall) if wall else None,
            tags={"mlflow.parentRunId": self.parent})
        stamp, last = _now(), 0
        values: dict[tuple[str, int], float] = {}
        for row in epochs:
            last = max(last, int(row["epoch"]))
            for key, value in row.items():
                number = finite(value) if key not in ("trial", "epoch") else None
                if number is not None:
                    values[(_name(key), int(row["epoch"]))] = number
        # summary fields that are also epoch fields (robust_acc, epsilon, ...) hold the last
        # epoch's value: keep the epoch history exactly as epochs.csv has it
        for key, value in summary.items():
            number = finite(value) if key not in described else None
            if number is not None:
                values.setdefault((_name(key), last), number)
        tags = {"status": status, **({"error": summary["error"]} if summary.get("error") else {})}
        try:
            self._log(run.info.run_id, params={**described, **self.config_params}, tags=tags,
                      metrics=[Metric(k, v, stamp, step) for (k, step), v in values.items()])
        finally:
            self.client.set_terminated(run.info.run_id,
                                       "FAILED" if status == "failed" else "FINISHED")

    def run_finished(self, run_dir: Path) -> None:
        try:
            for name in REPORT_FILES:
                if (run_dir / name).is_file():
                    self.client.log_artifact(self.parent, str(run_dir / name))
            for path in sorted(run_dir.iterdir()):
                if path.is_file() and path.suffix.lower() in IMAGES:
                    self.client.log_artifact(self.parent, str(path))
            if (run_dir / "figures").is_dir():  # report.md links figures/NAME.png
                self.client.log_artifacts(self.parent, str(run_dir / "figures"), "figures")
        except Exception as error:
            log.warning("mlflow: the report was not logged: %s", _one_line(error))
        self._end("FINISHED")

    def close(self) -> None:
        """End a parent that run_finished did not: interrupted (KILLED) or crashed (FAILED).
        Called in ``run_in_folder``'s finally block, where sys.exc_info() is what is propagating."""
        if not self.ended:
            error = sys.exc_info()[1]
            self._end("KILLED" if isinstance(error, (KeyboardInterrupt, SystemExit)) else "FAILED")

    def _end(self, status: str) -> None:
        self.ended = True  # one attempt: a store that refused it will not take a retry either
        try:
            self.client.set_terminated(self.parent, status)
        except Exception as error:
            log.warning("mlflow: parent run %s not ended: %s", self.parent, _one_line(error))


def _open_mlflow(uri: str | None, run_dir: Path, config: ExperimentConfig) -> MlflowTracker:
    uri = uri or DEFAULT_URI
    client = connect(uri)
    try:
        return MlflowTracker(client, uri, run_dir, config)
    except TrackingError:
        raise
    except Exception as error:  # e.g. the run folder's id file cannot be written
        raise TrackingError(f"--tracking-uri: cannot start a run in {uri}: "
                            f"{_one_line(error)}") from None


# kind -> (check the store, open a tracker)
TRACKERS = {"mlflow": (connect, _open_mlflow)}


def _kind(kind: str):
    if kind not in TRACKERS:
        raise TrackingError(f"--track: unknown tracker {kind!r}; allowed: {', '.join(TRACKERS)}")
    return TRACKERS[kind]


def check_tracker(kind: str, uri: str | None) -> None:
    """Raise TrackingError now if ``open_tracker`` could not open this store: lets a run
    refuse a bad --tracking-uri before it creates its folder."""
    _kind(kind)[0](uri)


def open_tracker(kind: str, uri: str | None, run_dir: Path, config: ExperimentConfig):
    """The tracker ``kind`` (``mlflow``) logging into ``uri``; raises TrackingError (a
    ValueError, exit 2 in the CLI) with one line when the store cannot be used."""
    return _kind(kind)[1](uri, Path(run_dir), config)


__all__ = ["open_tracker", "check_tracker", "MlflowTracker", "TrackingError", "DEFAULT_URI"]
