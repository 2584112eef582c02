"""Mutation testing of the critical modules: does the fast suite fail when a result is wrong?

Runs mutmut (https://mutmut.readthedocs.io) on each group of GROUPS with the group's fast
tests as its runner, then reports the kill rate per module and overall. Mutants listed in
``tools/equivalent_mutants.txt`` (one line each: KEY, then the reason they cannot change
behaviour) are left out of the rate; every other survivor is printed with its diff and key.

    .venv/bin/python tools/mutation.py                      # every group
    .venv/bin/python tools/mutation.py bounds schedules     # some groups
    .venv/bin/python tools/mutation.py --list               # the groups, their files and tests

Each group runs in a staging copy under ``--workdir`` (never in the working tree, which other
processes may be importing): ``attacks/`` and ``privacy/`` are copied to ``robustlr/attacks``
and ``robustlr/privacy`` there, so module names match the installed ``robustlr.attacks``.
Exit status 1 when the overall kill rate is under ``--fail-under``.
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EQUIVALENTS = REPO / "tools" / "equivalent_mutants.txt"

# group -> (modules to mutate, test files that exercise them; globs, so moved tests still count)
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "bounds": (["robustlr/results/bounds.py"],
               ["tests/**/test_bounds*.py"]),
    "schedules": (["robustlr/schedules/base.py", "robustlr/schedules/decay.py",
                   "robustlr/schedules/cyclic.py", "robustlr/schedules/special.py"],
                  ["tests/**/test_schedules.py", "tests/**/test_schedule_properties.py"]),
    "attack_metrics": (["attacks/poisoning/metrics.py", "attacks/filters/metrics.py"],
                       ["tests/attacks/test_poisoning.py", "tests/attacks/test_filters.py",
                        "tests/attacks/test_metrics.py"]),
    "pgd": (["attacks/_common.py", "attacks/pgd.py", "attacks/fgsm.py"],
            ["tests/attacks/test_attacks_pgd*.py", "tests/attacks/test_properties.py"]),
    "cascade": (["attacks/cascade.py"], ["tests/attacks/test_attacks_cascade.py"]),
    "privacy": (["privacy/accounting/accountants.py", "privacy/accounting/guard.py"],
                ["tests/privacy/test_privacy_accounting.py", "tests/privacy/test_*guard*.py",
                 "tests/privacy/test_*properties*.py"]),
    "clock": (["robustlr/training/loop.py", "robustlr/training/setup.py"],
              ["tests/training/test_trainer.py", "tests/training/test_averaging.py",
               "tests/training/test_recipe.py", "tests/training/test_clock*.py"]),
    # the store's own unit tests (milliseconds): the end-to-end run tests cost seconds a mutant
    "store": (["robustlr/results/store.py", "robustlr/runs/grid_runner.py"],
              ["tests/results/test_store.py"]),
    # the DP regime's step accounting (the functions in ONLY), on its fast unit tests
    "dp_steps": (["robustlr/regimes/dp.py"], ["tests/privacy/test_dp_steps.py"]),
}

# groups that mutate only some functions of their modules (mutmut's mutant-name globs); the
# rest of the module is left to the tests that train with it
ONLY: dict[str, list[str]] = {
    "dp_steps": [f"robustlr.regimes.dp.xǁDPRegimeǁ{name}__mutmut_*" for name in (
        "before_step", "step", "spent", "gdp_estimate", "epoch_metrics", "stop_reason",
        "summary")],
}

# Lines of a group left unmutated (mutmut's do_not_mutate_patterns; a match covers the whole
# statement): they need what the fast runner cannot have. They are NOT equivalent mutants:
# tests/runs/test_ddp.py (several processes, minutes) and the GPU benchmark cover them.
# - clock: wrapping the model in DDP needs a process group (train --nproc); torch.compile
#   needs a C compiler and costs seconds to minutes per trial.
SKIP_LINES: dict[str, list[str]] = {
    "clock": [r"setup\.model = regime\.data_parallel\(setup\)",
              r"setup\.model = torch\.compile\(setup\.model\)"],
}

# tests that check the working tree's own layout, which a staging copy does not have
DESELECT = ["tests/attacks/test_attacks_pgd.py::test_import_resolves_to_this_repository",
            "tests/privacy/test_privacy_accounting.py::test_import_resolves_to_this_repository"]

# Lines that run only at import time (registration decorators): the module is imported before
# mutmut switches a mutant on, so no test can ever see a mutant there; the registry tests pin
# what these lines produce.
IMPORT_TIME_LINES = [r'setattr\(cls, "name", name\)', r"return SCHEDULES\.register\(name\)\(cls\)"]

KILLED = {1, 3, 24, -24, 36, 37, 152, 255}  # a failing test, a timeout, the type checker

# Appended to the staging copy's tests/conftest.py (never the working tree's): mutmut runs a
# fresh pytest session per mutant, so every session fixture that trains a model (digits_cnn,
# 4 s) would retrain it for every mutant. The wrapper keys a trained state_dict by everything
# training reads -- train_plain's source, the model's architecture and initial weights, the
# data and the keyword arguments -- so a mutant that changes the data (poisoning) still trains
# afresh, and a cached model is the very one training would have produced.
TRAIN_CACHE = """

# --- added by tools/mutation.py in its staging copy: trained models cached on disk ---
def _cached_training(train, cache):
    import hashlib, inspect, os, pathlib

    def cached(model, x, y, **kwargs):
        digest = hashlib.sha256(inspect.getsource(train).encode() + repr(model).encode()
                                + repr(sorted(kwargs.items())).encode())
        for tensor in [*model.state_dict().values(), x, y]:
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        path = pathlib.Path(cache) / f"{digest.hexdigest()}.pt"
        if path.exists():
            model.load_state_dict(torch.load(path, weights_only=True))
            return model.eval()
        model = train(model, x, y, **kwargs)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), f"{path}.{os.getpid()}.tmp")
        os.replace(f"{path}.{os.getpid()}.tmp", path)
        return model

    return cached


train_plain = _cached_training(train_plain, CACHE_DIR)
"""


def staged(path: str) -> str:
    """Where a repository path lives in the staging copy (attacks/ -> robustlr/attacks/)."""
    top, _, rest = path.partition("/")
    return f"robustlr/{top}/{rest}" if top in ("attacks", "privacy") else path


def stage(group: str, workdir: Path) -> tuple[Path, list[str]]:
    """A fresh staging copy for ``group`` with its mutmut configuration; returns its tests."""
    modules, patterns = GROUPS[group]
    tests = sorted({t for p in patterns for t in glob.glob(p, root_dir=REPO, recursive=True)})
    if not tests:
        raise SystemExit(f"group {group}: no test file matches {patterns}")
    root = workdir / group
    shutil.rmtree(root, ignore_errors=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "robustlr", root / "robustlr", ignore=skip)
    for package in ("attacks", "privacy"):
        shutil.copytree(REPO / package, root / "robustlr" / package, ignore=skip)
    shutil.copytree(REPO / "tests", root / "tests", ignore=skip)
    with (root / "tests" / "conftest.py").open("a") as conftest:
        conftest.write(TRAIN_CACHE.replace("CACHE_DIR", repr(str(workdir / "trained-models"))))
    # made before Python starts: a PYTHONPATH entry missing at startup is cached as "no finder"
    # and the editable install's working tree would be imported instead of the mutants
    (root / "mutants").mkdir()
    settings = {
        "source_paths": ["robustlr"],
        "only_mutate": [staged(m) for m in modules],
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q", "-x"]
        + [arg for d in DESELECT for arg in ("--deselect", d)],
        "pytest_add_cli_args_test_selection": tests,
        "use_git_change_detection": False,
        # a mutant that loops forever (a search whose step no longer grows) is stopped after
        # 4x (its tests' time + 1 s) of CPU; mutmut's default, 30x, holds one for many minutes
        "timeout_multiplier": 2.0,
        "do_not_mutate_patterns": IMPORT_TIME_LINES + SKIP_LINES.get(group, []),
    }
    section = "\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    (root / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text() + section)
    return root, tests


def run_mutmut(root: Path, max_children: int, only: list[str] | None = None) -> int:
    """``mutmut run`` in ``root``; its output (a spinner, mostly) goes to ``root/mutmut.log``."""
    env = dict(os.environ, PYTHONPATH=str(root / "mutants"), OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")  # subprocesses the tests start import the mutants too
    mutmut = Path(sys.executable).with_name("mutmut")
    with (root / "mutmut.log").open("w") as log:
        code = subprocess.call([str(mutmut), "run", "--max-children", str(max_children),
                                *(only or [])],
                               cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        lines = (root / "mutmut.log").read_text(errors="replace").splitlines()
        print("\n".join(line for line in lines[-40:] if "\r" not in line and "⠋" not in line))
    return code


def results(root: Path) -> dict[str, dict[str, int | None]]:
    """``{module path: {mutant name: exit code}}`` from mutmut's metadata files."""
    found = {}
    for meta in sorted((root / "mutants").rglob("*.py.meta")):
        source = str(meta.relative_to(root / "mutants"))[: -len(".meta")]
        found[source] = json.loads(meta.read_text())["exit_code_by_key"]
    return found


def diff(root: Path, name: str, source: str) -> str:
    """The mutant's diff, as ``mutmut show`` prints it (computed in-process: much faster)."""
    from mutmut.configuration import reset_config
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    here = os.getcwd()
    os.chdir(root)  # mutmut reads its configuration and the mutants relative to the cwd
    try:
        reset_config()
        return get_diff_for_mutant(name, path=source)
    finally:
        os.chdir(here)


def key(name: str, text: str) -> str:
    """A key that survives renumbering: the function and a hash of the changed lines."""
    changed = [line for line in text.splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    function = name.rpartition("__mutmut_")[0]
    digest = hashlib.sha1("\n".join(changed).encode()).hexdigest()[:10]
    return f"{function}@{digest}"


def skipped(group: str, text: str) -> bool:
    """Whether a mutant's diff changes a line that SKIP_LINES leaves unmutated in ``group``."""
    removed = [line[1:] for line in text.splitlines()
               if line.startswith("-") and not line.startswith("---")]
    return any(re.search(p, line) for p in SKIP_LINES.get(group, []) for line in removed)


def load_equivalents() -> dict[str, str]:
    found = {}
    for line in EQUIVALENTS.read_text().splitlines() if EQUIVALENTS.exists() else []:
        line = line.strip()
        if line and not line.startswith("#"):
            mutant, _, reason = line.partition(" ")
            if not reason.strip():
                raise SystemExit(f"{EQUIVALENTS.name}: {mutant} has no reason")
            found[mutant] = reason.strip()
    return found


def report(group: str, root: Path, equivalents: dict[str, str], seen: set[str]) -> tuple[int, int]:
    killed_total = counted_total = 0
    for source, codes in results(root).items():
        if group in ONLY:  # mutants outside the group's functions are never run
            codes = {n: c for n, c in codes.items()
                     if any(fnmatch.fnmatch(n, pattern) for pattern in ONLY[group])}
        unchecked = sum(c is None for c in codes.values())  # an interrupted run
        codes = {n: c for n, c in codes.items() if c is not None}
        killed = [n for n, c in codes.items() if c in KILLED]
        survivors, equivalent = [], 0
        for name, code in list(codes.items()):
            if code in KILLED:
                continue
            text = diff(root, name, source)
            if skipped(group, text):  # a run staged before SKIP_LINES named the line
                del codes[name]
                continue
            if key(name, text) in equivalents:
                seen.add(key(name, text))
                equivalent += 1
            else:
                survivors.append((name, code, text))
        counted = len(codes) - equivalent
        rate = 100.0 * len(killed) / counted if counted else 100.0
        print(f"[{group}] {source}: {len(killed)}/{counted} killed ({rate:.1f}%), "
              f"{equivalent} equivalent" + (f", {unchecked} not run" if unchecked else ""))
        for name, code, text in survivors:
            print(f"  SURVIVED ({'no tests' if code == 33 else code}) {key(name, text)}\n{text}\n")
        killed_total += len(killed)
        counted_total += counted
    return killed_total, counted_total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help=f"default: every group ({', '.join(GROUPS)})")
    parser.add_argument("--list", action="store_true", help="print the groups and exit")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "robustlr-mutation")
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutant runs")
    parser.add_argument("--report-only", action="store_true",
                        help="report the last run's results in --workdir without running")
    parser.add_argument("--fail-under", type=float, default=90.0, help="minimum kill rate, %%")
    args = parser.parse_args(argv)
    if args.list:
        for name, (modules, tests) in GROUPS.items():
            only = f" (only {', '.join(ONLY[name])})" if name in ONLY else ""
            only += (f" (lines left unmutated: {', '.join(SKIP_LINES[name])})"
                     if name in SKIP_LINES else "")
            print(f"{name}: {' '.join(modules)}{only}\n    tests: {' '.join(tests)}")
        return 0
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group {unknown[0]!r}; allowed: {', '.join(GROUPS)}")
    equivalents, seen, broken = load_equivalents(), set(), []
    killed = counted = 0
    for group in args.groups or list(GROUPS):
        root = args.workdir / group
        if args.report_only:
            if not (root / "mutants").is_dir():
                broken.append(group)
                continue
        elif run_mutmut(stage(group, args.workdir)[0], args.max_children, ONLY.get(group)) != 0:
            print(f"[{group}] mutmut failed (its clean test run must pass): {root / 'mutmut.log'}")
            broken.append(group)
            continue
        k, c = report(group, root, equivalents, seen)
        killed, counted = killed + k, counted + c
    rate = 100.0 * killed / counted if counted else 100.0
    print(f"overall: {killed}/{counted} killed ({rate:.1f}%), "
          f"{len(seen)} listed equivalents matched"
          + (f"; NOT RUN: {', '.join(broken)}" if broken else ""))
    if broken:
        return 2
    return 0 if rate >= args.fail_under else 1


if __name__ == "__main__":
    sys.exit(main())
