"""What `pip install robustlr` puts on a user's path: one top-level package, with the
adversarial and DP sides inside its namespace, so generic names stay the user's."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"robustlr.attacks": ROOT / "attacks", "robustlr.privacy": ROOT / "privacy"}


def _folder_of(package: str) -> Path:
    for prefix, folder in MAPPED.items():
        if package == prefix or package.startswith(prefix + "."):
            return folder.joinpath(*package[len(prefix):].split(".")[1:])
    return ROOT.joinpath(*package.split("."))


def test_every_package_folder_is_listed_for_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = set()
    for top, folder in {"robustlr": ROOT / "robustlr", **MAPPED}.items():
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            on_disk.add(".".join([top, *parts]))
    assert listed == on_disk
    assert all((_folder_of(p) / "__init__.py").is_file() for p in listed)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    return next(out.glob("robustlr-*.whl"))


def test_the_wheel_installs_only_the_robustlr_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"robustlr"}
    assert "robustlr/attacks/pgd.py" in names and "robustlr/privacy/accounting/accountants.py" in names
    assert "robustlr/configs/default.yaml" in names


def test_a_users_attacks_module_neither_breaks_robustlr_nor_is_shadowed(tmp_path):
    (tmp_path / "attacks.py").write_text("raise SystemExit('the user file was imported')\n")
    (tmp_path / "privacy.py").write_text("raise SystemExit('the user file was imported')\n")
    probe = ("import robustlr.attacks, robustlr.privacy; "
             "print(robustlr.attacks.__file__); print(robustlr.privacy.__file__)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(ROOT / "attacks" / "__init__.py"),
                                   str(ROOT / "privacy" / "__init__.py")]
    helped = subprocess.run([sys.executable, "-m", "robustlr", "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "Commands:" in helped.stdout, helped.stderr
