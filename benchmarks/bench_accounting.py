"""Epsilon of a per-step noise sequence: robustlr's PRV composition vs exact dp-accounting PLD.

Cases: a linear noise schedule 2.0 -> 0.8 (every step a distinct value), 1,000 steps at
q = 0.05 and 10,000 steps at q = 0.01, delta 1e-5. "Exact PLD" is Google's dp-accounting
PLD (pessimistic, discretisation 1e-4) on the exact sequence, composed as a balanced tree;
it takes minutes to hours (about a second per distinct value just to build the PMFs), so it
is computed once with ``--reference`` and kept in a JSON file beside this script.

    .venv/bin/python benchmarks/bench_accounting.py [--reference] [--cases 1k,10k]

One thread; absolute seconds depend on the machine's load (say so when quoting them).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _harness

_harness.setup()  # before numpy/torch load their thread pools

import numpy as np

from robustlr.privacy import epsilon

CASES = {"1k": (1000, 0.05), "10k": (10_000, 0.01)}  # steps, sample rate
DELTA = 1e-5
REFERENCE = Path(__file__).with_name("accounting_reference.json")


def noise(steps: int) -> np.ndarray:
    return np.linspace(2.0, 0.8, steps)


def exact_pld(sigmas: np.ndarray, q: float) -> float:
    """dp-accounting PLD on every step's own value (dev dependency; slow by design)."""
    from dp_accounting.pld import privacy_loss_distribution as pld

    parts = [pld.from_gaussian_mechanism(float(s), sampling_prob=q,
                                         value_discretization_interval=1e-4) for s in sigmas]
    while len(parts) > 1:  # balanced tree: the same result as one by one, fewer large FFTs
        parts = [parts[i].compose(parts[i + 1]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    return float(parts[0].get_epsilon_for_delta(DELTA))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="1k,10k")
    parser.add_argument("--reference", action="store_true", help="recompute exact PLD")
    args = parser.parse_args()
    saved = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {}
    print(f"{'case':>5} {'ours':>8} {'s':>7} {'exact PLD':>10} {'s':>8} {'ratio':>7}")
    for name in args.cases.split(","):
        steps, q = CASES[name]
        sigmas = noise(steps)
        if args.reference or name not in saved:
            if not args.reference:
                print(f"{name:>5}: no saved exact PLD; run with --reference", flush=True)
            else:
                start = time.perf_counter()
                saved[name] = {"epsilon": exact_pld(sigmas, q),
                               "seconds": time.perf_counter() - start}
                REFERENCE.write_text(json.dumps(saved, indent=1) + "\n")
        start = time.perf_counter()
        ours = epsilon(sample_rate=q, noise_multiplier=sigmas, steps=steps, delta=DELTA)
        seconds = time.perf_counter() - start
        ref = saved.get(name, {})
        exact = ref.get("epsilon", float("nan"))
        print(f"{name:>5} {ours:8.4f} {seconds:7.1f} {exact:10.4f} "
              f"{ref.get('seconds', float('nan')):8.0f} {ours / exact:7.4f}", flush=True)


if __name__ == "__main__":
    main()
