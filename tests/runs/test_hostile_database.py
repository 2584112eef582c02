"""A malformed database fails every command that reads it: pages overwritten (SQLite's
integrity check fails) or a summary value of the wrong type is one line with exit 1 in report,
gate, compare, export and --resume, never a pass, a traceback or a silently dropped trial."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from robustlr import experiment
from robustlr.runs.folder import run_in_folder
from tests.helpers import cli, one_line, tiny


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    config = experiment.from_mapping(tiny(train={"epochs": 2}))
    return run_in_folder(config, out=tmp_path_factory.mktemp("database") / "run", show_progress=False)


COMMANDS = {
    "report": lambda run: ("report", run),
    "gate": lambda run: ("gate", run, "--min", "clean_acc=1"),
    "compare": lambda run: ("compare", run, run),
    "export": lambda run: ("export", run, "--format", "robustbench"),
    "resume": lambda run: ("run", "--resume", run, "--no-progress"),
}


def _damage_pages(database: Path) -> None:
    """Overwrite the tail of every page after the first (the header and schema stay readable,
    so the file still opens: only the integrity check can tell)."""
    data = bytearray(database.read_bytes())
    size = int.from_bytes(data[16:18], "big")
    for start in range(size, len(data), size):
        data[start + size // 2: start + size] = b"\xa5" * (size // 2)
    database.write_bytes(bytes(data))


@pytest.mark.parametrize("command", list(COMMANDS))
def test_overwritten_pages_are_one_line_exit_1(finished, tmp_path, command):
    run_dir = Path(shutil.copytree(finished, tmp_path / "run"))
    _damage_pages(run_dir / "results.sqlite")
    message = one_line(cli(*COMMANDS[command](run_dir)), 1)
    assert "results.sqlite" in message and ("damaged" in message or "malformed" in message)


@pytest.mark.parametrize("command", ["report", "gate", "compare", "export"])
@pytest.mark.parametrize("value", ["'high'", "json_array(1, 2)", "json('true')"])
def test_a_summary_value_of_the_wrong_type_is_an_error_not_a_dropped_trial(
        finished, tmp_path, command, value):
    run_dir = Path(shutil.copytree(finished, tmp_path / "run"))
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        db.execute(f"UPDATE trials SET summary = json_set(summary, '$.clean_acc', {value}) "
                   "WHERE position = 0")
    message = one_line(cli(*COMMANDS[command](run_dir)), 1)
    assert "clean_acc" in message and "not a number" in message


def test_an_epoch_value_of_the_wrong_type_is_an_error(finished, tmp_path):
    run_dir = Path(shutil.copytree(finished, tmp_path / "run"))
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        db.execute("UPDATE epochs SET record = json_set(record, '$.test_acc', 'x') WHERE epoch = 1")
    assert "test_acc" in one_line(cli("report", run_dir), 1)


def test_report_reads_only_the_report_section_of_the_config(finished, tmp_path):
    """A run folder from elsewhere may name any factory in its config: report imports none."""
    run_dir = Path(shutil.copytree(finished, tmp_path / "run"))
    text = (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text(text.replace("name: mlp", "name: antigravity_xyz:Net"))
    result = cli("report", run_dir)
    assert result.exit_code == 0, result.output
    (run_dir / "config.yaml").write_text(text + "\nreport: {rank_by: no_such_metric}\n")
    assert "report" in one_line(cli("report", run_dir), 2)
