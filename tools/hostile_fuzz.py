"""A hostile battery (issue 25): hypothesis fuzzing of model specs read from checkpoints, npz
files, RobustBench-style sidecars and run folders, through the code a user's command runs.

Per target it counts examples; ``refused`` (one line, the promised exit code or error class);
``accepted``; ``tracebacks`` (any other exception, or a message of more than one line);
``hangs`` (an example past its time limit); ``code_runs`` (a canary file that a hostile spec
would create exists); ``link_writes`` (a file behind a planted link changed). Usage::

    python tools/hostile_fuzz.py --seconds 120 [--json]

The budget is split evenly over the targets; each runs hypothesis in batches of random
examples until its share is spent. tests/runs/test_hostile_fuzz.py runs a bounded version.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import signal
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class Hung(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def stop(signum, frame):
        raise Hung(f"over {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Tally:
    """Outcomes of one target; the first few tracebacks are kept to be read."""

    def __init__(self, name: str):
        self.name, self.counts, self.examples = name, Counter(), []

    def record(self, outcome: str, detail: str = "") -> None:
        self.counts[outcome] += 1
        if outcome not in ("refused", "accepted") and len(self.examples) < 5:
            self.examples.append(f"{outcome}: {detail[:300]}")

    def summary(self) -> dict[str, Any]:
        keys = ("examples", "refused", "accepted", "tracebacks", "hangs", "code_runs", "link_writes")
        counts = {**self.counts, "examples": sum(self.counts.values())}
        return {"target": self.name, **{k: counts.get(k, 0) for k in keys},
                "first_problems": self.examples}


def cli(*args: Any):
    from click.testing import CliRunner

    from robustlr.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def classify_cli(result) -> tuple[str, str]:
    """accepted (exit 0), refused (exit 1/2 with one 'robustlr: error:' line) or a traceback."""
    if isinstance(result.exception, Hung):
        return "hangs", str(result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return "tracebacks", f"{type(result.exception).__name__}: {result.exception}"
    if result.exit_code == 0:
        return "accepted", ""
    message = result.output.strip().splitlines()
    if result.exit_code in (1, 2) and len(message) == 1 and message[0].startswith("robustlr: error: "):
        return "refused", ""
    return "tracebacks", f"exit {result.exit_code}: {result.output[-300:]!r}"


def classify_error(error: BaseException) -> tuple[str, str]:
    from robustlr.errors import RobustlrError
    from robustlr.spec import SpecError

    if isinstance(error, Hung):
        return "hangs", str(error)
    if isinstance(error, (RobustlrError, SpecError)) and "\n" not in str(error):
        return "refused", ""
    return "tracebacks", f"{type(error).__name__}: {error}"


# --- strategies ----------------------------------------------------------------------------

def hostile_names(canary: Path) -> st.SearchStrategy[str]:
    calls = [f"os:system(command='touch {canary}')", f"posix:system(command='touch {canary}')",
             f"subprocess:getoutput(cmd='touch {canary}')",
             f"builtins:exec(source='open(\"{canary}\", \"w\")')",
             f"pathlib:Path.touch(self='{canary}')", "importlib:import_module(name='this')"]
    names = st.sampled_from(["mlp", "cnn", "wrn", "resnet18", "torchvision:resnet18",
                             "timm:resnet18", "os:system", "x", "", "a.b:c.d", "torchvision:nope"])
    values = st.one_of(st.integers(-10**20, 10**20).map(str), st.sampled_from(
        ["9**9**9", "[1, 2]", "'DEFAULT'", "true", "1e999", "[" * 40 + "]" * 40, "-1", "0"]))
    keys = st.sampled_from(["hidden", "width", "depth", "weights", "pretrained", "norm",
                            "command", "num_classes", "checkpoint_path"])
    composed = st.builds(lambda name, pairs: f"{name}({', '.join(f'{k}={v}' for k, v in pairs)})",
                         names, st.lists(st.tuples(keys, values), max_size=3))
    return st.one_of(st.sampled_from(calls), composed, names, st.text(max_size=60))


def json_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                  st.text(max_size=12)),
        lambda inner: st.one_of(st.lists(inner, max_size=4),
                                st.dictionaries(st.text(max_size=6), inner, max_size=4)),
        max_leaves=12)


def sidecars(canary: Path) -> st.SearchStrategy[Any]:
    shapes = st.one_of(st.lists(st.integers(-3, 10**6), max_size=5), json_values(),
                       st.just([100_000, 100_000, 100_000]), st.just([1, 8, 8]))
    archs = st.one_of(st.sampled_from(["mlp", "cnn(width=8)", "wrn(depth=10, width=1)"]),
                      hostile_names(canary), json_values())
    fields = {"arch": archs, "input_shape": shapes}
    optional = {"num_classes": st.one_of(st.integers(-5, 10**10), json_values()),
                "mean": st.one_of(st.lists(st.floats(), max_size=3), json_values()),
                "std": st.one_of(st.lists(st.floats(), max_size=3), json_values())}
    return st.one_of(st.fixed_dictionaries(fields, optional=optional), json_values(),
                     st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth))


DTYPES = ["uint8", "float32", "float64", "int64", "int8", "complex64", "bool", "<U3", "object",
          "float16", "uint64"]


@st.composite
def arrays(draw, role: str) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if role == "x":
        shape = draw(st.sampled_from([(12, 1, 4, 4), (12, 4, 4, 1), (12, 16), (12, 2, 8), (12,),
                                      (0, 1, 4, 4), (12, 1, 1, 1, 1), (3, 1, 4, 4)]))
    else:
        shape = draw(st.sampled_from([(12,), (3,), (12, 1), (0,), ()]))
    if dtype.kind == "O":
        return np.array([{"k": 1}] * (shape[0] if shape else 1), dtype=object)
    if dtype.kind == "U":
        return np.full(shape, "ab", dtype=dtype)
    pool = [0, 1, 2, -1, 2**40, 1e20, float("nan"), float("inf"), 0.5, 255] if role == "y" else \
        [0, 1, 0.5, 255, -1, 2.0, float("nan")]
    values = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4))
    flat = np.resize(np.array(values, dtype=np.float64), int(np.prod(shape)) if shape else 1)
    with np.errstate(all="ignore"):
        return flat.reshape(shape).astype(dtype) if dtype.kind != "c" else flat.reshape(shape).astype(dtype)


@st.composite
def npz_files(draw) -> bytes:
    kind = draw(st.sampled_from(["arrays", "arrays", "arrays", "bytes", "bad header"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    buffer = io.BytesIO()
    if kind == "bad header":
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {
            "descr": draw(st.sampled_from(["<f4", "|O", "<i8", "|u1"])), "fortran_order": False,
            "shape": (draw(st.sampled_from([10**12, 12, 2**62])), 1, 4, 4)})
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("x.npy", header.getvalue() + b"\0" * draw(st.integers(0, 200)))
            archive.writestr("y.npy", header.getvalue())
        return buffer.getvalue()
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    content = {"x": rng.random((12, 1, 4, 4)).astype(np.float32), "y": np.arange(12) % 3}
    if draw(st.booleans()):
        content.update(x_test=rng.random((6, 1, 4, 4)).astype(np.float32), y_test=np.arange(6) % 3)
    # a valid file with some of its arrays replaced by hostile ones (or none: it must load)
    for key in draw(st.lists(st.sampled_from(["x", "y", "x_test", "y_test"]), max_size=2)):
        content[key] = draw(arrays(key.removesuffix("_test")))
    np.savez(buffer, **content)
    return buffer.getvalue()


MUTATIONS = ["delete", "garbage", "truncate", "link", "sql", "flip_bytes", "yaml"]
FOLDER_FILES = ["results.sqlite", "config.yaml", "summary.json", "epochs.csv", "report.html",
                "run.log", "results.sqlite-wal", "figures", "trials"]


@st.composite
def folder_mutations(draw) -> list[tuple[str, str, Any]]:
    return draw(st.lists(st.tuples(
        st.sampled_from(MUTATIONS), st.sampled_from(FOLDER_FILES),
        st.one_of(st.binary(max_size=64), json_values(), st.integers(0, 10**6))),
        min_size=1, max_size=3))


# --- targets ---------------------------------------------------------------------------------

def spec_target(work: Path, canary: Path, tally: Tally) -> Callable[[Any], None]:
    import torch

    def run(spec: str) -> None:
        meta = {"format": 1, "spec": spec, "input_shape": [1, 8, 8], "num_classes": 10,
                "mean": [0.5], "std": [0.2], "extra": None}
        path = work / "model.pt"
        torch.save({"metadata": json.dumps(meta), "state_dict": {}}, path)
        with time_limit(60):  # a large registry model (wrn-28-10) takes seconds to build
            result = cli("attack", path, "--data", "digits", "--attack", "fgsm(eps=0.1)",
                         "--limit", "2", "--device", "cpu")
        outcome, detail = classify_cli(result)
        tally.record(outcome, f"{spec!r}: {detail}")
    return run


def sidecar_target(work: Path, canary: Path, tally: Tally) -> Callable[[Any], None]:
    import torch

    torch.save({}, work / "net.pt")

    def run(sidecar: Any) -> None:
        from robustlr.models import foreign

        text = sidecar if isinstance(sidecar, str) else json.dumps(sidecar)
        (work / "net.json").write_text(text)
        try:
            with time_limit(20):
                found = foreign.foreign_spec(work / "net.pt", arch=None, input_shape=None,
                                                 num_classes=10)
                if found is not None:
                    foreign.load_checkpoint(work / "net.pt", **found)
            tally.record("accepted")
        except BaseException as error:  # noqa: BLE001  (classified, never raised)
            tally.record(*classify_error(error))
    return run


def npz_target(work: Path, canary: Path, tally: Tally) -> Callable[[Any], None]:
    from robustlr import experiment
    from robustlr.training import preflight
    from robustlr.training.trial import prepare_data

    def run(content: bytes) -> None:
        prepare_data.cache_clear()  # the data of one path is cached per process
        path = work / "data.npz"
        path.write_bytes(content)
        raw = {"data": {"name": "npz", "path": str(path), "val_fraction": 0.25,
                        "test_fraction": 0.25},
               "model": {"name": "mlp", "hidden": [4]}, "schedules": ["constant"],
               "train": {"epochs": 1, "batch_size": 2}}
        try:
            with time_limit(20):
                preflight.check(experiment.from_mapping(raw))  # the checks before a folder
            tally.record("accepted")
        except BaseException as error:  # noqa: BLE001
            tally.record(*classify_error(error))
    return run


def folder_target(work: Path, canary: Path, tally: Tally) -> Callable[[Any], None]:
    from robustlr import experiment
    from robustlr.runs.folder import run_in_folder

    base = work / "base"
    config = experiment.from_mapping({
        "data": {"name": "synthetic", "synthetic": {"num_examples": 120, "num_classes": 3,
                                                    "shape": [1, 4, 4]}},
        "model": {"name": "mlp", "hidden": [4]}, "schedules": ["constant"],
        "train": {"epochs": 1, "batch_size": 16}})
    run_in_folder(config, out=base, show_progress=False)
    victim = work / "victim"

    def mutate(run_dir: Path, operation: str, name: str, payload: Any) -> None:
        target = run_dir / name
        if operation == "delete":
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        elif operation in ("garbage", "yaml") and not target.is_dir():
            text = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            (run_dir / ("config.yaml" if operation == "yaml" else name)).write_bytes(text)
        elif operation == "truncate" and target.is_file():
            with open(target, "r+b") as handle:
                handle.truncate(payload if isinstance(payload, int) else 0)
        elif operation == "link":
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
            target.symlink_to(victim)
        elif operation == "flip_bytes" and (run_dir / "results.sqlite").is_file():
            data = bytearray((run_dir / "results.sqlite").read_bytes())
            offset = (payload if isinstance(payload, int) else 100) % max(len(data), 1)
            data[offset:offset + 16] = b"\xff" * 16
            (run_dir / "results.sqlite").write_bytes(bytes(data))
        elif operation == "sql" and (run_dir / "results.sqlite").is_file():
            import sqlite3

            value = payload.decode("latin-1") if isinstance(payload, bytes) else json.dumps(payload)
            with contextlib.suppress(sqlite3.Error), sqlite3.connect(run_dir / "results.sqlite") as db:
                db.execute("UPDATE trials SET summary = ?", (value,))

    def run(mutations: list[tuple[str, str, Any]]) -> None:
        run_dir = work / "run"
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(base, run_dir, symlinks=True)
        for operation, name, payload in mutations:
            mutate(run_dir, operation, name, payload)
        victim.write_bytes(b"the user's file")  # after the mutations: they may write through a link
        for args in (("report", run_dir), ("gate", run_dir, "--min", "clean_acc=1"),
                     ("compare", run_dir, run_dir), ("export", run_dir, "--format", "robustbench")):
            try:
                with time_limit(60):
                    result = cli(*args)
                tally.record(*classify_cli(result))
            except Hung as error:
                tally.record("hangs", f"{args[0]}: {error}")
            if victim.read_bytes() != b"the user's file":
                tally.record("link_writes", f"{args[0]} after {mutations}")
                victim.write_bytes(b"the user's file")
    return run


TARGETS: dict[str, tuple[Callable[..., Callable[[Any], None]], Callable[[Path], Any]]] = {
    "model specs in checkpoints": (spec_target, hostile_names),
    "sidecars": (sidecar_target, sidecars),
    "npz files": (npz_target, lambda canary: npz_files()),
    "run folders": (folder_target, lambda canary: folder_mutations()),
}


def fuzz(name: str, *, seconds: float, batch: int = 20, max_examples: int | None = None,
         derandomize: bool = False) -> dict:
    """Run target ``name`` for ``seconds`` (or ``max_examples``); its summary. ``derandomize``:
    the same examples every time (for a test)."""
    make_target, strategy = TARGETS[name]
    tally = Tally(name)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        canary = work / "canary"
        target = make_target(work, canary, tally)
        started = time.monotonic()
        examples = 0

        @settings(max_examples=batch, deadline=None, database=None, derandomize=derandomize,
                  suppress_health_check=list(HealthCheck))
        @given(strategy(canary))
        def one(value):
            target(value)
            if canary.exists():
                tally.record("code_runs", repr(value)[:200])
                canary.unlink()

        while time.monotonic() - started < seconds:
            one()
            examples += batch
            if max_examples is not None and examples >= max_examples:
                break
        summary = tally.summary()
        summary["seconds"] = round(time.monotonic() - started, 1)
    return summary


def main() -> int:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="total budget")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [fuzz(name, seconds=args.seconds / len(TARGETS)) for name in TARGETS]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['target']:<28} {r['examples']:>5} examples in {r['seconds']:>5} s: "
                  f"{r['refused']} refused, {r['accepted']} accepted, {r['tracebacks']} tracebacks, "
                  f"{r['hangs']} hangs, {r['code_runs']} code runs, {r['link_writes']} link writes")
            for problem in r["first_problems"]:
                print(f"    {problem}")
    bad = sum(r[k] for r in results for k in ("tracebacks", "hangs", "code_runs", "link_writes"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
