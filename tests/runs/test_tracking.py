"""--track mlflow against a real local MLflow SQLite store: one experiment per grid, one
parent run per run folder (reused on --resume), one child run per trial with its params,
per-epoch metric history and summary metrics; tracking errors never cost the run its results."""

from __future__ import annotations

import csv
import json
import logging
import math
import sqlite3

import pytest

pytest.importorskip("mlflow")

from click.testing import CliRunner  # noqa: E402
from helpers import tiny, write_config  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from robustlr import experiment  # noqa: E402
from robustlr.cli import main  # noqa: E402
from robustlr.runs.folder import run_in_folder  # noqa: E402
from robustlr.runs.tracking import RUN_ID_FILE, check_tracker, open_tracker  # noqa: E402


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    # one store for the module: creating it runs MLflow's migrations (seconds)
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def load(tmp_path, **overrides):
    return experiment.load(write_config(tmp_path / "config.yaml", tiny(**overrides)))


def tracked(tmp_path, uri, name, **overrides):
    return run_in_folder(load(tmp_path, name=name, **overrides), out=tmp_path / "run",
                   track="mlflow", tracking_uri=uri, show_progress=False)


def runs_of(uri, name):
    """(client, parents, children by run name) of the experiment ``name``. A trial logged
    twice (a resume that re-ran a finished trial) fails here: a dict keyed by name would keep
    one of the two and hide the other."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    names = [r.info.run_name for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(names) == len(set(names)), f"a trial has several child runs: {sorted(names)}"
    children = {r.info.run_name: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    return client, parents, children


def read(run_dir):
    with (run_dir / "epochs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return json.loads((run_dir / "summary.json").read_text()), rows


def test_a_tracked_run_has_one_parent_and_a_child_per_trial_with_the_run_folder_numbers(tmp_path, uri):
    run_dir = tracked(tmp_path, uri, "track-basic")
    summary, rows = read(run_dir)
    client, parents, children = runs_of(uri, "track-basic")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_name == run_dir.name and parent.info.status == "FINISHED"
    assert parent.data.tags["robustlr.run_dir"] == str(run_dir.resolve())
    assert (run_dir / RUN_ID_FILE).read_text().strip() == parent.info.run_id
    assert set(children) == {r["trial"] for r in summary}
    for record in summary:
        child = children[record["trial"]]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED" and child.data.tags["status"] == "ok"
        params = child.data.params
        assert params["schedule"] == record["schedule"] and params["seed"] == "0"
        assert params["model"] == "mlp(hidden=[16])" and params["dataset"] == "synthetic"
        assert (params["epochs"], params["batch_size"], params["base_lr"],
                params["optimizer"]) == ("3", "32", "0.1", "sgd")
        history = client.get_metric_history(child.info.run_id, "test_acc")
        mine = [r for r in rows if r["trial"] == record["trial"]]
        assert sorted((m.step, m.value) for m in history) == [
            (int(r["epoch"]), float(r["test_acc"])) for r in mine]
        assert [m.step for m in client.get_metric_history(child.info.run_id, "lr")] == [1, 2, 3]
        assert child.data.metrics["clean_acc"] == record["clean_acc"]
        assert child.data.metrics["train_seconds"] == record["train_seconds"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.html", "report.md", "summary.json", "epochs.csv", "config.yaml",
            "figures"} <= artifacts
    figures = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert "figures/lr_curves.png" in figures
    # artifacts sit beside the SQLite file, not in the directory the tests ran from
    assert parent.info.artifact_uri.startswith(uri.replace("sqlite:///", "file://").rsplit("/", 1)[0])


def test_a_failed_trial_is_a_failed_child_run_with_its_error(tmp_path, uri, monkeypatch):
    from robustlr.runs import tasks

    def boom(*args, **kwargs):  # a trial that raises while it trains (one worker: in-process)
        raise RuntimeError("boom")

    monkeypatch.setattr(tasks, "run_trial", boom)
    run_dir = tracked(tmp_path, uri, "track-failed", schedules=["constant"])
    summary, _ = read(run_dir)
    _, parents, children = runs_of(uri, "track-failed")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    child = children[summary[0]["trial"]]
    assert child.info.status == "FAILED"
    assert child.data.tags["status"] == "failed"
    assert child.data.tags["error"] == summary[0]["error"] == "RuntimeError: boom"


def test_resume_reuses_the_parent_run_and_logs_only_the_unfinished_trials(tmp_path, uri):
    run_dir = tracked(tmp_path, uri, "track-resume")
    client, parents, children = runs_of(uri, "track-resume")
    parent_id = parents[0].info.run_id
    # as if the first session had been killed during the second trial
    summary, _ = read(run_dir)
    lost = summary[1]["trial"]
    database = sqlite3.connect(run_dir / "results.sqlite")
    with database:
        database.execute("UPDATE trials SET status = 'running', summary = NULL WHERE trial = ?", (lost,))
        database.execute("DELETE FROM epochs WHERE trial = ?", (lost,))
    database.close()
    client.delete_run(children[lost].info.run_id)
    client.set_terminated(parent_id, "KILLED")

    run_in_folder(None, resume=run_dir, track="mlflow", tracking_uri=uri, show_progress=False)
    _, parents, children = runs_of(uri, "track-resume")
    assert [p.info.run_id for p in parents] == [parent_id]
    assert parents[0].info.status == "FINISHED"
    assert set(children) == {r["trial"] for r in summary}  # each trial once
    assert len(client.get_metric_history(children[lost].info.run_id, "test_acc")) == 3


def test_the_cli_tracks_end_to_end_and_rejects_a_uri_without_track(tmp_path, uri):
    config = write_config(tmp_path / "c.yaml", tiny(name="track-cli"))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", str(config), "--track", "mlflow", "--tracking-uri",
                                       uri, "--no-progress", "--out", str(out)])
    assert result.exit_code == 0, result.output
    _, parents, children = runs_of(uri, "track-cli")
    assert len(parents) == 1 and len(children) == 2  # from a pool of 2 workers
    assert all(c.info.status == "FINISHED" for c in children.values())

    result = CliRunner().invoke(main, ["run", str(config), "--tracking-uri", uri,
                                       "--out", str(tmp_path / "other")])
    assert result.exit_code == 2 and "--tracking-uri" in result.output


@pytest.mark.parametrize("bad", ["nosuchscheme://x", "http://127.0.0.1:9"])
def test_a_store_that_cannot_be_opened_is_one_line_naming_the_option(tmp_path, bad):
    with pytest.raises(ValueError, match="^--tracking-uri: ") as caught:
        check_tracker("mlflow", bad)  # what a run can ask before it creates its folder
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="^--tracking-uri: "):
        open_tracker("mlflow", bad, tmp_path, load(tmp_path))
    with pytest.raises(ValueError, match="^--track: unknown tracker 'wandb'"):
        open_tracker("wandb", None, tmp_path, load(tmp_path))
    assert not (tmp_path / RUN_ID_FILE).exists()
    with pytest.raises(ValueError, match="^--tracking-uri: "):  # through a run: no folder left
        run_in_folder(load(tmp_path), out=tmp_path / "run", track="mlflow", tracking_uri=bad,
                show_progress=False)
    assert not (tmp_path / "run").exists()


def test_tracking_errors_are_warnings_and_names_are_made_valid(tmp_path, uri, caplog):
    logging.getLogger("robustlr").addHandler(caplog.handler)  # the run log stops propagation
    try:
        tracker = open_tracker("mlflow", uri, tmp_path, load(tmp_path, name="track-direct"))
        trial = {"trial": "t1", "schedule": "constant", "regime": "standard", "lr_scale": 1.0,
                 "seed": 0, "status": "ok", "clean_acc": 0.5, "epsilon": math.nan,
                 "per_class_acc": [0.5, 0.5]}
        rows = [{"trial": "t1", "epoch": e, "test_acc": 0.1 * e, "a:b/c": 1.0, "gone": None,
                 "nan": math.nan, "flag": True, "text": "x"} for e in (1, 2)]
        tracker.trial_finished("t1", trial, rows)
        client, _, children = runs_of(uri, "track-direct")
        metrics = children["t1"].data.metrics
        assert set(metrics) == {"test_acc", "a_b_c", "clean_acc"}
        assert [m.step for m in client.get_metric_history(children["t1"].info.run_id,
                                                          "clean_acc")] == [2]

        client.delete_run(tracker.parent)
        client.delete_experiment(tracker.experiment_id)  # MLflow now refuses new runs in it
        tracker.trial_finished("t2", {**trial, "trial": "t2"}, rows)
        assert "mlflow: trial t2 was not logged" in caplog.text
        tracker.close()  # does not raise
    finally:
        logging.getLogger("robustlr").removeHandler(caplog.handler)


def test_close_ends_an_unfinished_parent_killed_on_interrupt_else_failed(tmp_path, uri):
    config = load(tmp_path, name="track-close")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    failed = open_tracker("mlflow", uri, tmp_path / "a", config)
    failed.close()
    killed = open_tracker("mlflow", uri, tmp_path / "b", config)
    with pytest.raises(KeyboardInterrupt):
        try:
            raise KeyboardInterrupt
        finally:
            killed.close()
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(failed.parent).info.status == "FAILED"
    assert client.get_run(killed.parent).info.status == "KILLED"
