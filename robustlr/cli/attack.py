"""``robustlr attack``: robust accuracy of a saved model under a cascade of attacks.

Each attack runs only on the points still correct after the ones before it (AutoAttack's
cascade, :func:`attacks.cascade`), so the accuracy printed after each attack never rises and
the last one is the model's robust accuracy against all of them. Example::

    robustlr attack runs/x/trials/ID/model.pt --data digits \\
        --attack "fgsm(eps=0.1)" --attack "pgd(eps=0.1, steps=50, restarts=5)" --json

Bad input (a spec, a file, a dataset) is one line on stderr and exit code 2, as everywhere
in the CLI. The command is registered on the ``robustlr`` group in :mod:`robustlr.cli`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from robustlr.errors import InputError


def _trusted(names: tuple[str, ...]) -> frozenset[str]:
    from robustlr.plugins import PluginError, trusted_set

    try:
        return trusted_set(names, field="--trust-factory")
    except PluginError as error:
        raise InputError(str(error)) from None


def _load_model(path: Path, device, trust: frozenset[str]):
    from robustlr import models

    if not path.is_file():
        raise InputError(f"MODEL_PATH: no such file {str(path)!r}")
    try:
        return (models.load(path, map_location="cpu", trust=trust).to(device),
                models.read_metadata(path))
    except ValueError as error:  # models.load's own one-line message
        raise InputError(f"MODEL_PATH: {error}") from None
    except Exception as error:  # a truncated file or a foreign pickle
        raise InputError(f"MODEL_PATH: {str(path)!r} is not a robustlr model checkpoint "
              f"({type(error).__name__})") from None


def _load_data(name: str, split: str, root: str, limit: int | None, input_shape: list[int]):
    from robustlr import data
    from robustlr.plugins import is_import_path

    options = {"root": root}
    if name.endswith(".npz"):  # the user's own arrays, as data: {name: npz, path: FILE}
        name, options["path"] = "npz", name
    elif name not in data.DATA_SOURCES or name == "npz" or is_import_path(name):
        if not is_import_path(name):
            raise InputError(f"--data: unknown dataset {name!r}; allowed: "
                             f"{', '.join(d for d in data.DATA_SOURCES.names() if d != 'npz')}, a FILE.npz or "
                             "an import path 'package.module:factory'")
    try:
        x, y = data.load(name, split=split, seed=0, **options)
    except (data.DataError, ValueError) as error:
        raise InputError(f"--data: {error}") from None
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise InputError(f"--data: {name} has inputs of shape {tuple(x.shape[1:])} but the model expects "
              f"{tuple(input_shape)}")
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y


def _recorded_split(meta: dict, name: str, split: str, root: str, limit: int | None,
                    trust: frozenset[str] = frozenset()):
    """The examples of ``split`` the model's checkpoint records it was trained beside
    (:func:`robustlr.data.provenance.recorded_split`); None when it records none."""
    from robustlr.data.provenance import ProvenanceError, recorded_split

    try:
        bundle = recorded_split((meta.get("extra") or {}).get("data"), name=name, root=root,
                                trust=trust)
    except ProvenanceError as error:
        raise InputError(f"{'MODEL_PATH' if error.about == 'record' else '--data'}: {error}") from None
    if bundle is None:
        return None
    x, y = getattr(bundle, split)
    return (x[:limit], y[:limit]) if limit is not None else (x, y)


def _build_attacks(specs: tuple[str, ...]) -> list[tuple[str, Any]]:
    from robustlr.catalog import ATTACKS
    from robustlr.spec import SpecError, parse

    built = []
    for spec in specs:
        try:
            built.append((str(parse(spec, kind="attack")), ATTACKS.build(spec)))
        except SpecError as error:
            raise InputError(f"--attack: {error}") from None
    return built


def _device(name: str):
    from robustlr.distributed import DeviceError, resolve_device

    try:
        return resolve_device(name)
    except DeviceError as error:
        raise InputError(f"--device: {error}") from None


def _table(result: dict[str, Any]) -> str:
    width = max(len("attack"), *(len(s["attack"]) for s in result["steps"]))
    lines = [f"model: {result['model']}",
             f"data: {result['data']} ({result['split']}, {result['examples']} examples), "
             f"device: {result['device']}, {result['seconds']:.1f} s",
             "",
             f"{'attack':<{width}}  robust acc %",
             f"{'(clean)':<{width}}  {100 * result['clean_acc']:12.2f}"]
    lines += [f"{s['attack']:<{width}}  {100 * s['robust_acc']:12.2f}" for s in result["steps"]]
    lines.append(f"{'robust accuracy':<{width}}  {100 * result['robust_acc']:12.2f}")
    return "\n".join(lines)


@click.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@click.option("--data", "dataset", required=True,
              help="Dataset name (digits, mnist1d, mnist, fashion_mnist, cifar10, ...), a FILE.npz "
                   "or a factory 'package.module:factory', split as robustlr splits it by default "
                   "(val 0.15, test 0.2, split_seed 0); a model trained by robustlr is scored on "
                   "the split its checkpoint records.")
@click.option("--attack", "specs", multiple=True, required=True,
              help='An attack spec, e.g. "pgd(eps=0.1, steps=50, restarts=5)"; repeat it for '
                   "a cascade, weakest first.")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test",
              show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N examples of the split.")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--root", default="data", show_default=True,
              help="Folder holding downloaded datasets (mnist, fashion_mnist, cifar10).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--arch", help="MODEL_PATH is a state dict trained elsewhere (RobustBench-style): "
                             "robustlr's architecture for it, e.g. cnn (or a sidecar MODEL.json "
                             "with arch, input_shape, num_classes, optional mean and std).")
@click.option("--input-shape", help="With --arch: the input shape, channels first, e.g. 1,8,8.")
@click.option("--num-classes", type=click.IntRange(min=2), default=10, show_default=True,
              help="With --arch: the number of classes.")
@click.option("--trust-factory", "trust", multiple=True, metavar="PKG.MOD:FACTORY",
              help="Import and call this factory when the checkpoint (or its sidecar) names it; "
                   "without it a factory named in a file is refused (repeat for several).")
def attack(model_path: Path, dataset: str, specs: tuple[str, ...], split: str,
           limit: int | None, batch_size: int, device: str, root: str, as_json: bool,
           arch: str | None, input_shape: str | None, num_classes: int,
           trust: tuple[str, ...]) -> None:
    """Robust accuracy of the model saved at MODEL_PATH under a cascade of attacks."""
    from robustlr.attacks import cascade, expand_stages
    from robustlr.models import foreign as foreign_models

    attacks = _build_attacks(specs)  # cheapest check first: a typo fails before any loading
    target = _device(device)
    trusted = _trusted(trust)
    foreign = foreign_models.foreign_spec(model_path, arch=arch, input_shape=input_shape,
                                           num_classes=num_classes, trust=trusted)
    if foreign is None:
        model, meta = _load_model(model_path, target, trusted)
    else:  # a state dict plus an architecture name, as RobustBench's model zoo stores them
        if not model_path.is_file():
            raise InputError(f"MODEL_PATH: no such file {str(model_path)!r}")
        model = foreign_models.load_checkpoint(model_path, **foreign).to(target)
        meta = {"input_shape": list(foreign["input_shape"])}
    recorded = _recorded_split(meta, dataset, split, root, limit, trusted)
    x, y = recorded or _load_data(dataset, split, root, limit, meta["input_shape"])
    started = time.perf_counter()
    # autoattack's sub-attacks become rows of their own, as RobustBench logs them
    outcome = cascade(model, x, y, expand_stages(attacks), batch_size=batch_size)
    result = {"model": str(model_path), "data": dataset, "split": split, "examples": len(y),
              "device": str(target), "clean_acc": outcome.clean_acc,
              "steps": [{"attack": name, "robust_acc": acc} for name, acc in outcome.steps],
              "robust_acc": outcome.robust_acc, "robust_per_class": outcome.robust_per_class,
              "seconds": time.perf_counter() - started}
    click.echo(json.dumps(result, indent=2) if as_json else _table(result))


__all__ = ["attack"]
