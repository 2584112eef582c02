"""A run folder: resolved config, results database, exports, report and log.

Nothing is created until the config is valid; a folder this call created is removed again if
setting it up fails, so a bad start never leaves a half-written run behind.
"""

from __future__ import annotations

import datetime
import importlib.util
import logging
import math
import shutil
from pathlib import Path

from robustlr import config as config_module
from robustlr import experiment
from robustlr.config import ConfigError, ExperimentConfig, ReportConfig
from robustlr.errors import InputError, RunFailure
from robustlr.nofollow import refuse_links_below
from robustlr.results.export import write_exports
from robustlr.results.report import build_report
from robustlr.results.store import INTERRUPTED, SIDE_FILES, Store, StoreError
from robustlr.runs import fingerprint
from robustlr.runs.grid_runner import run_grid
from robustlr.runs.progress import Progress
from robustlr.runs.runlog import LOG_FILE, run_log
from robustlr.runs.tracking import check_tracker, open_tracker
from robustlr.training import preflight

log = logging.getLogger("robustlr")

CONFIG_FILE, DATABASE = "config.yaml", "results.sqlite"
WRITTEN = (CONFIG_FILE, DATABASE, *(DATABASE + tail for tail in SIDE_FILES), LOG_FILE,
           "summary.json", "epochs.csv", "report.html", "report.md", "robustbench.json")
"""The files a run folder's commands write at its top level; with ``figures/`` and ``trials/``
they are checked for planted links before a resume or a report writes anything."""


def refuse_planted_links(run_dir: Path) -> None:
    """A link at any name a run writes (the database and its side files, the log, exports,
    reports, figures, checkpoints) is refused with one line (exit 1) before anything is written."""
    refuse_links_below(run_dir, WRITTEN, ("figures", "trials"))


class RunError(InputError):
    """A run that cannot start as asked; one line for the user."""


def quick(config: ExperimentConfig) -> ExperimentConfig:
    """Every trial of ``config``, with fewer epochs, less data and smaller evaluations."""
    # at most 400 training examples: a larger batch would be refused (and is no smoke test)
    train = config.train.model_copy(update={"epochs": min(config.train.epochs, 2),
                                            "batch_size": min(config.train.batch_size, 128)})
    data = config.data.model_copy(update={"limit": min(config.data.limit or 400, 400)})
    evaluation = config.evaluation.model_copy(update={
        "subset": min(config.evaluation.subset, 100),
        "final_subset": min(config.evaluation.final_subset or 100, 100), "sanity": False})
    filtering = config.filtering.model_copy(update={"epochs": min(config.filtering.epochs, 2)})
    return config.model_copy(update={"train": train, "data": data, "evaluation": evaluation,
                                     "filtering": filtering, "name": config.name + "-quick"})


def _default_dir(config: ExperimentConfig) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.name}-{stamp}"


def _open_resumed(resume: Path, config: ExperimentConfig | None) -> ExperimentConfig:
    saved_path = resume / CONFIG_FILE
    if not saved_path.is_file() or not (resume / DATABASE).is_file():
        raise RunError(f"--resume: {resume} is not a robustlr run folder "
                       f"(no {CONFIG_FILE} and {DATABASE})")
    saved = experiment.load(saved_path)
    if config is not None and config_module.dump(config) != config_module.dump(saved):
        raise RunError(f"--resume: the config differs from {saved_path}; resume without a "
                       "config or with the same one")
    return saved


MAX_TRIALS = 10_000
"""The largest grid `robustlr run` starts without --max-trials (each trial trains a model)."""


def check_grid_size(config: ExperimentConfig, max_trials: int = MAX_TRIALS) -> None:
    """Refuse a grid above ``max_trials`` from its dimensions alone, before it is expanded (two
    million trials took minutes to expand, silently)."""
    sizes = [math.prod(len(dims[name]) for name in dims) for dims in config.dimension_sets()]
    if sum(sizes) > max_trials:
        shown = f"{' + '.join(f'{size:,}' for size in sizes)} over grids; " if len(sizes) > 1 else ""
        raise RunError(f"grid: {sum(sizes):,} trials ({shown}schedules x regimes x poisoning x "
                       f"filter x averaging x lr_scales x seeds) is above the limit of "
                       f"{max_trials:,}; shrink the grid or pass --max-trials {sum(sizes)}")


OPTIONAL = {"ray": ("ray", "--backend ray"), "mlflow": ("mlflow", "--track mlflow")}


def require_extra(extra: str) -> None:
    """An optional extra that is not installed is a one-line error saying how to get it."""
    module, flag = OPTIONAL[extra]
    if importlib.util.find_spec(module) is None:
        raise RunError(f"{flag} needs the optional package {module!r}: "
                       f"pip install 'robustlr[{extra}]'")


def start(config: ExperimentConfig | None, *, out: Path | None = None,
          resume: Path | None = None,
          max_trials: int = MAX_TRIALS) -> tuple[ExperimentConfig, Path, Store]:
    """Validate the target folder, then create it; returns the config to run and its store."""
    if config is not None:
        check_grid_size(config, max_trials)
    if resume is not None:
        config = _open_resumed(resume, config)
        check_grid_size(config, max_trials)
        refuse_planted_links(resume)
        store = Store(resume / DATABASE)
        try:
            fingerprint.check(store, config, str(resume))
            store.claim_writer()
        except (StoreError, fingerprint.ConfigChanged):
            store.close()
            raise
        return config, resume, store
    assert config is not None
    run_dir = out or _default_dir(config)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"--out: {run_dir} is a file, not a folder; choose a new folder name")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"--out: {run_dir} exists and is not empty; choose another folder or "
                       f"continue it with --resume {run_dir}")
    preflight.check(config)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILE).write_text(config_module.dump(config))
        store = Store(run_dir / DATABASE)
        store.claim_writer()
        store.set_meta("name", config.name)
        fingerprint.record(store, config)
    except OSError as error:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise RunError(f"--out: cannot create the run folder {run_dir}: {error.strerror or error}") from None
    except Exception:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return config, run_dir, store


def run_in_folder(config: ExperimentConfig | None, *, out: Path | None = None,
                  resume: Path | None = None, workers: int = 1, save_models: bool = False,
                  show_progress: bool = True, backend: str = "local", address: str | None = None,
                  track: str | None = None, tracking_uri: str | None = None,
                  max_trials: int = MAX_TRIALS) -> Path:
    """Run (or finish) a grid in a run folder and write its exports and report; returns the
    folder.

    ``backend`` is ``local`` (a process pool) or ``ray``; ``track`` names a tracker
    (``mlflow``) that receives every trial finished by this call and the report.
    """
    if backend == "ray":
        require_extra("ray")
        if address is not None:
            from robustlr.runs.ray_backend import check_address  # ray is an optional extra

            check_address(address)
    if track is not None:
        require_extra(track)
        check_tracker(track, tracking_uri)  # a bad --tracking-uri is exit 2 before any folder
    config, run_dir, store = start(config, out=out, resume=resume, max_trials=max_trials)
    try:
        with run_log(run_dir):
            _run_grid_logged(config, run_dir, store, resumed=resume is not None,
                             workers=workers, save_models=save_models,
                             show_progress=show_progress, backend=backend, address=address,
                             track=track, tracking_uri=tracking_uri)
    finally:
        store.close()
    return run_dir


execute = run_in_folder
"""The name :func:`run_in_folder` had before; kept for callers that import it."""


def _run_grid_logged(config: ExperimentConfig, run_dir: Path, store: Store, *, resumed: bool,
                     workers: int, save_models: bool, show_progress: bool, backend: str,
                     address: str | None, track: str | None, tracking_uri: str | None) -> None:
    progress = Progress(enabled=show_progress)
    observers: tuple = ()
    try:
        if track is not None:
            observers = (open_tracker(track, tracking_uri, run_dir, config),)
        log.info("run %s: %s (backend %s)", run_dir, "resumed" if resumed else "started", backend)
        run_grid(config, run_dir, store, workers=workers, save_models=save_models,
                 progress=progress, backend=backend, address=address, observers=observers)
        finish(run_dir, store, config.name, config.report)
        for observer in observers:
            observer.run_finished(run_dir)
        log.info("run %s finished: %s", run_dir, store.counts())
        _check_interrupted(run_dir, store)
    finally:
        for observer in observers:
            observer.close()
        progress.close()


class TrialsInterrupted(RunFailure):
    """Trials whose worker died: the rest of the grid is recorded, these are not (exit 1)."""


def _check_interrupted(run_dir: Path, store: Store) -> None:
    count = store.counts().get(INTERRUPTED, 0)
    if count:
        raise TrialsInterrupted(f"{count} trial{'s were' if count > 1 else ' was'} interrupted "
                                f"(a worker died; see {DATABASE} and run.log); the rest are "
                                f"recorded: run `robustlr run --resume {run_dir}` to finish them")


def finish(run_dir: Path, store: Store, title: str, ranking=None) -> None:
    try:
        summaries, rows = write_exports(store, run_dir)
        build_report(run_dir, title, summaries, rows, ranking)
    except OSError as error:  # the results are safe in the database; `robustlr report` redoes this
        raise StoreError(f"cannot write the exports and report in {run_dir}: "
                         f"{error.strerror or error} (is the disk full or the folder read-only?); "
                         f"the results are in {DATABASE}: free space, then run "
                         f"`robustlr report {run_dir}`") from None


def trial_counts(run_dir: Path) -> dict[str, int]:
    """Trials of a run folder by status (ok, failed, diverged, budget_exhausted, ...)."""
    store = Store(run_dir / DATABASE)
    try:
        return store.counts()
    finally:
        store.close()


def _saved_ranking(path: Path) -> ReportConfig:
    """The ``report`` section of a run folder's config, and nothing else: validating the whole
    config would import the model and data factories it names (a folder may come from
    elsewhere), and a report needs none of them."""
    from pydantic import ValidationError

    from robustlr.safe_yaml import load_file

    raw = load_file(path)
    section = raw.get("report") if isinstance(raw, dict) else None
    try:
        return ReportConfig.model_validate(section or {})
    except ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in ("report", *problem["loc"]))
        raise RunError(f"report: {path}: {field}: {problem['msg']}") from None


def rebuild_report(run_dir: Path, ranking=None) -> None:
    """Rewrite the exports and report; ``ranking`` replaces the config's ``report`` settings."""
    if not (run_dir / DATABASE).is_file():
        raise RunError(f"report: {run_dir} holds no {DATABASE}; is it a robustlr run folder?")
    if ranking is None and (run_dir / CONFIG_FILE).is_file():
        ranking = _saved_ranking(run_dir / CONFIG_FILE)
    refuse_planted_links(run_dir)
    store = Store(run_dir / DATABASE)
    try:
        finish(run_dir, store, store.meta("name") or run_dir.name, ranking)
    finally:
        store.close()


__all__ = ["run_in_folder", "execute", "start", "quick", "rebuild_report", "trial_counts", "RunError",
           "ConfigError", "StoreError"]
