"""How fast the CLI starts: `robustlr --help` and `robustlr schedules` beside `python -c pass`
(the interpreter's own floor), median of N runs each, in rotating order.

Targets (issue 14): --help <= 1.0 s, schedules <= 1.5 s. Commands import torch only when they
train or evaluate, so neither should import torch; the script checks that too.

    python benchmarks/bench_startup.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import _harness

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "robustlr --help": [sys.executable, "-m", "robustlr", "--help"],
    "robustlr schedules": [sys.executable, "-m", "robustlr", "schedules"],
}
TORCH_FREE = [sys.executable, "-c", "import sys, robustlr.cli, robustlr.schedules; "
              "print(int('torch' in sys.modules))"]


def _seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    names = list(COMMANDS)
    for run in range(args.runs):
        for name in _harness.rotated(names, run):
            times[name].append(_seconds(COMMANDS[name]))
    medians = _harness.medians(times)
    floor = medians["python -c pass"]
    imports_torch = subprocess.run(TORCH_FREE, check=True, capture_output=True, text=True).stdout.strip()
    result = {"median_seconds": medians,
              "above_python_floor": {n: m - floor for n, m in medians.items() if n != "python -c pass"},
              "cli_imports_torch": imports_torch == "1"}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
