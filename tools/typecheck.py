"""Type-check robustlr as it is installed: attacks/ and privacy/ inside the robustlr namespace.

mypy knows nothing of setuptools' package-dir mapping, so this lays out the installed shape
with symbolic links in a temporary folder, runs mypy there, and prints the findings with
the repository's own paths. Usage: ``python tools/typecheck.py`` (exit code: mypy's).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"attacks": ROOT / "attacks", "privacy": ROOT / "privacy"}


def main() -> int:
    with tempfile.TemporaryDirectory() as stage:
        package = Path(stage) / "robustlr"
        package.mkdir()
        for entry in (ROOT / "robustlr").iterdir():
            if entry.name != "__pycache__":
                (package / entry.name).symlink_to(entry)
        for name, folder in MAPPED.items():
            (package / name).symlink_to(folder)
        done = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                               "--cache-dir", str(ROOT / ".mypy_cache"), "-p", "robustlr"],
                              cwd=stage, capture_output=True, text=True)
        output = done.stdout + done.stderr
        for name, folder in MAPPED.items():
            output = output.replace(f"robustlr/{name}/", f"{folder.relative_to(ROOT)}/")
        print(output, end="")
        return done.returncode


if __name__ == "__main__":
    sys.exit(main())
