"""The README's Python examples are executed, so the documented API cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_examples():
    assert BLOCKS, "README.md lost its ```python examples"


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_a_readme_python_example_runs(number, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples write files (a saved model) where they run
    exec(compile(BLOCKS[number], f"README.md python block {number}", "exec"), {"__name__": "readme"})
