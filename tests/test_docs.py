"""The README and the documentation site are executed, so they cannot drift from the code:
every ```python block runs (in a fresh folder), every ```yaml config validates, every
`robustlr ...` command line of a ```bash block names a real command and real options, and a
tutorial's block runs as written with its config; and no page carries a date, a note about
how this version was built, or a path that does not exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from robustlr import experiment

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)


def _blocks(language: str) -> list[tuple[str, int, str]]:
    return [(page.relative_to(ROOT).as_posix(), number, body)
            for page in PAGES
            for number, (lang, body) in enumerate(FENCE.findall(page.read_text()))
            if lang == language]


PYTHON, YAML, BASH = _blocks("python"), _blocks("yaml"), _blocks("bash")


def test_the_pages_have_examples_of_each_kind():
    assert PYTHON and YAML and BASH
    assert len(PAGES) > 10, "the docs site lost its pages"


@pytest.mark.parametrize("page, number, code", PYTHON, ids=[f"{p}#{n}" for p, n, _ in PYTHON])
def test_a_python_example_runs(page, number, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples write files (a saved model, a run folder) where they run
    exec(compile(code, f"{page} python block {number}", "exec"), {"__name__": "docs"})


CONFIGS = [(p, n, b) for p, n, b in YAML if "schedules:" in b]


@pytest.mark.parametrize("page, number, text", CONFIGS, ids=[f"{p}#{n}" for p, n, _ in CONFIGS])
def test_a_yaml_config_validates(page, number, text):
    experiment.from_mapping(yaml.safe_load(text))


def _command_lines() -> list[tuple[str, list[str]]]:
    found = []
    for page, _, body in BASH:
        for line in body.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|\|\||;", line.split("#")[0]):
                words = shlex.split(part)
                if words and words[0].endswith("robustlr") and len(words) > 1:
                    found.append((page, words[1:]))
    return found


COMMANDS = _command_lines()


@pytest.mark.parametrize("page, words", COMMANDS, ids=[f"{p}: {' '.join(w)}" for p, w in COMMANDS])
def test_a_command_line_names_a_real_command_and_its_options(page, words):
    import click

    from robustlr.cli import main

    command: click.Command = main
    rest = list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        assert name in command.commands, f"{page}: no command {name!r}"
        command = command.commands[name]
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for word in rest:
        if word.startswith("--"):
            assert word.split("=")[0] in options | {"--help"}, f"{page}: {' '.join(words)}: no option {word}"


STALE = [re.compile(p) for p in (r"\b20\d\d-\d\d-\d\d\b", r"(?i)no gpu was lent",
                                  r"(?i)this (session|round)\b", r"(?i)not yet measured")]
PATH = re.compile(r"`((?:tests|benchmarks|tools|experiments|robustlr|attacks|privacy)/[\w./-]+\.(?:py|yaml|json))`")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_no_page_is_dated_or_names_a_missing_file(page):
    text = page.read_text()
    for pattern in STALE:
        assert not pattern.search(text), f"{page.name}: stale statement {pattern.search(text)[0]!r}"
    missing = [path for path in PATH.findall(text) if not (ROOT / path).exists()]
    assert not missing, f"{page.name} names files that do not exist: {missing}"


# Pages whose ```bash blocks run as written here. The others are not executed by this test:
# the set-up commands are what .ci/run itself runs, docs/benchmarks.md's scripts are long
# side-by-side measurements, and docs/reproductions.md's need the network (the MNIST wheels)
# and CPU-hours (each reproduction runs --quick in tests/results/test_reproduction.py).
EXECUTED = ["docs/poisoning.md"]


@pytest.mark.parametrize("page", EXECUTED)
def test_a_tutorial_runs_as_written(page, tmp_path):
    import os
    import subprocess
    import sys

    (config,) = [body for p, _, body in CONFIGS if p == page]
    (commands,) = [body for p, _, body in BASH if p == page]
    named = re.search(r"Save this config as `([\w.]+)`", (ROOT / page).read_text())
    assert named, f"{page}: the tutorial must name the file its config is saved as"
    (tmp_path / named[1]).write_text(config)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    results = [subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
               for line in commands.splitlines() if line.strip()]
    run, gate = results
    assert run.returncode == 0, run.stderr[-2000:]
    # the page says what the gate finds: the unfiltered arms learn the backdoor
    assert gate.returncode == 1 and "gate: FAILED" in gate.stdout
    unfiltered = [row for row in gate.stdout.splitlines() if row.rstrip().endswith("FAIL")
                  and "/ none " in row]
    assert len(unfiltered) == 3, gate.stdout
