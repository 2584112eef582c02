"""The neighbouring-dataset test: a DP trial trained twice through ``run_trial`` on two data
sets that differ in one training example (same seeds, same config) must save and release
identical values everywhere DP noise does not reach: the model's buffers (normalization)
and metadata (the data record, the split fingerprint, the class count), best/last
checkpoints, every tensor and field of the mid-trial resume checkpoints, epoch rows and
the summary. Excluded, and only these: the parameters and the optimizer's state (they pass
through the noise) and numbers computed from them on public or identical data (accuracies
and losses on the validation and test splits, the best epoch chosen from them), and timings.

A positive control runs the same comparison on a standard trial, where the training split's
exact statistics are in the model: it must find them, so the comparison can see a leak.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import tiny

from robustlr import data, experiment
from robustlr.data import normalization
from robustlr.data.sources import DATA_SOURCES, Source
from robustlr.grid import expand
from robustlr.training import checkpoint
from robustlr.training.trial import prepare_data, run_trial

N, TEST, SHAPE = 300, 90, (1, 6, 6)
DP = "dp(noise_multiplier=1.0, max_grad_norm=1.0)"
POST_PROCESSING = {"val_loss", "val_acc", "test_loss", "test_acc", "clean_acc", "clean_acc_best",
                   "best_epoch", "best_val", "val_acc_best", "per_class_acc", "worst_class",
                   "worst_class_acc", "worst_class_gap"}
"""Computed from the noised weights on the validation/test splits, which the two data sets
share: post-processing, free to differ."""


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=N)
    x = np.clip(rng.normal(0.3 + 0.2 * y[:, None, None, None], 0.15, (N, *SHAPE)), 0, 1)
    y_test = rng.integers(0, 3, size=TEST)
    x_test = np.clip(rng.normal(0.3 + 0.2 * y_test[:, None, None, None], 0.15, (TEST, *SHAPE)), 0, 1)
    return {"x": x.astype(np.float32), "y": y, "x_test": x_test.astype(np.float32), "y_test": y_test}


def _neighbour(arrays: dict[str, np.ndarray], config: data.DataConfig) -> dict[str, np.ndarray]:
    """The same data with one *training* example replaced (inputs inverted, another label)."""
    train, _, _ = data._split_indices(config, arrays["y"], has_test=True)
    index = int(train[0])
    other = {key: value.copy() for key, value in arrays.items()}
    other["x"][index] = 1.0 - other["x"][index]
    other["y"][index] = (other["y"][index] + 1) % 3
    return other


def _config(data_section: dict[str, Any], **overrides: Any):
    raw = tiny(data=data_section, model={"name": "mlp", "hidden": [8]}, schedules=["constant"],
               regimes=[DP], train={"epochs": 3, "batch_size": 30, "lr": 0.1, "momentum": 0.9,
                                    "checkpoints": "both", "checkpoint_every": 1})
    for key, value in overrides.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
    raw["data"] = {key: value for key, value in raw["data"].items() if key != "synthetic"}
    # best.pt under DP picks an epoch on the validation split: allowed only when it is public
    raw["data"].setdefault("public_validation", True)
    return experiment.from_mapping(raw)


def _train(config, trial_dir: Path, monkeypatch) -> dict[str, Any]:
    """One trial through run_trial; resume checkpoints kept (a finished trial deletes them).
    Both data sets live at one path (it is part of the trial id): the data cache is emptied."""
    monkeypatch.setattr(checkpoint, "clear", lambda directory: None)
    prepare_data.cache_clear()
    rows: list[dict[str, Any]] = []
    summary = run_trial(config, expand(config)[0], on_epoch=rows.append, trial_dir=trial_dir,
                        save_model=True)
    return {"summary": summary, "rows": rows, "dir": trial_dir}


def _timing(key: str) -> bool:
    return "seconds" in key or key == "samples_per_second"


def _differences(a: Any, b: Any, where: str, out: list[str]) -> list[str]:
    """Every path at which ``a`` and ``b`` differ (tensors exactly, NaN equal to NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if isinstance(key, str) and (_timing(key) or key in POST_PROCESSING
                                         or key.startswith("test_acc_class")):
                continue
            if key not in a or key not in b:
                out.append(f"{where}.{key}: present in one run only")
            else:
                _differences(a[key], b[key], f"{where}.{key}", out)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            out.append(f"{where}: lengths {len(a)} and {len(b)}")
        for index, (x, y) in enumerate(zip(a, b)):
            _differences(x, y, f"{where}[{index}]", out)
    elif isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or not torch.equal(a, b):
            out.append(f"{where}: tensors differ")
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        pass
    elif a != b:
        out.append(f"{where}: {a!r} != {b!r}")
    return out


def _buffers(state: dict[str, torch.Tensor], parameters: set[str]) -> dict[str, torch.Tensor]:
    return {key: value for key, value in state.items() if key not in parameters}


def _saved_model(path: Path) -> tuple[dict, dict]:
    saved = torch.load(path, weights_only=True)
    meta = json.loads(saved["metadata"])
    if meta["extra"] and "epoch" in meta["extra"] and path.name == "best.pt":
        meta["extra"].pop("epoch")  # chosen by validation accuracy of the noised weights
    return meta, saved["state_dict"]


def _released(run: dict[str, Any], parameters: set[str]) -> dict[str, Any]:
    """Everything the trial saved or returned, less the noised parameters and optimizer
    state; resume checkpoints matched by file name."""
    released: dict[str, Any] = {"summary": run["summary"], "rows": run["rows"]}
    for name in ("model.pt", "best.pt", "last.pt"):
        meta, state = _saved_model(run["dir"] / name)
        released[name] = {"metadata": meta, "buffers": _buffers(state, parameters)}
    resumes = checkpoint.checkpoints(run["dir"] / "resume")
    assert resumes, "the trial wrote no mid-trial resume checkpoint"
    for path in resumes:
        state = torch.load(path, weights_only=True)
        state["model"] = _buffers(state["model"], parameters)
        state["optimizer"] = {"param_groups": state["optimizer"]["param_groups"]}
        released[f"resume/{path.name}"] = state
    return released


def _parameter_names(run: dict[str, Any]) -> set[str]:
    from robustlr import models

    model = models.load(run["dir"] / "model.pt")
    return {name for name, _ in model.named_parameters()}


def _compare(first: dict, second: dict) -> list[str]:
    parameters = _parameter_names(first)
    return _differences(_released(first, parameters), _released(second, parameters), "run", [])


def _pair(tmp_path: Path, monkeypatch, make_config) -> tuple[dict, dict]:
    """The same trial on the two neighbouring npz files, written in turn at one path;
    ``make_config(path)`` builds it."""
    arrays, path = _arrays(), tmp_path / "data.npz"
    config = make_config(path)
    runs = []
    for name, values in (("a", arrays), ("b", _neighbour(arrays, config.data))):
        np.savez(path, **values)
        runs.append(_train(config, tmp_path / name, monkeypatch))
    return runs[0], runs[1]


PUBLIC = {"mean": [0.5], "std": [0.25]}


def _npz(path: Path, **extra: Any) -> dict[str, Any]:
    return {"name": "npz", "path": str(path), "val_fraction": 0.2, **extra}


def test_a_dp_trial_with_public_constants_releases_nothing_else_about_one_example(tmp_path, monkeypatch):
    first, second = _pair(tmp_path, monkeypatch, lambda p: _config(_npz(p, **PUBLIC)))
    assert _compare(first, second) == []
    assert _saved_model(first["dir"] / "model.pt")[0]["mean"] == PUBLIC["mean"]
    # what the equality rests on: the parameters did differ (the example was trained on)
    a, b = (torch.load(r["dir"] / "model.pt", weights_only=True)["state_dict"] for r in (first, second))
    assert any(not torch.equal(a[k], b[k]) for k in _parameter_names(first))


def test_a_dp_trial_on_a_dataset_with_a_public_default_uses_it(tmp_path, monkeypatch):
    """mnist's published constants, on a stand-in for its files (no download here)."""
    current: dict[str, dict[str, np.ndarray]] = {}
    loader = DATA_SOURCES.loader
    monkeypatch.setattr(DATA_SOURCES, "loader", lambda name: (lambda config: Source(
        current["arrays"]["x"], current["arrays"]["y"], current["arrays"]["x_test"],
        current["arrays"]["y_test"])) if name == "mnist" else loader(name))
    arrays = _arrays()
    config = _config({"name": "mnist", "val_fraction": 0.2})
    runs = []
    for name, values in (("a", arrays), ("b", _neighbour(arrays, config.data))):
        current["arrays"] = values
        runs.append(_train(config, tmp_path / name, monkeypatch))
    assert _compare(*runs) == []
    meta, state = _saved_model(runs[0]["dir"] / "model.pt")
    assert meta["mean"] == [0.1307] and meta["std"] == [0.3081]
    assert state["normalize.mean"].tolist() == pytest.approx([0.1307])


def test_a_dp_trial_with_augmentation_releases_nothing_else(tmp_path, monkeypatch):
    first, second = _pair(tmp_path, monkeypatch, lambda p: _config(
        _npz(p, **PUBLIC, augment=["random_crop(padding=1)", "hflip"])))
    assert _compare(first, second) == []


def test_a_dp_trial_with_augmentation_multiplicity_releases_nothing_else(tmp_path, monkeypatch):
    first, second = _pair(tmp_path, monkeypatch, lambda p: _config(
        _npz(p, **PUBLIC, augment=["random_crop(padding=1)"]),
        regimes=["dp(noise_multiplier=1.0, grad_sample_mode=hooks, augmult=3)"]))
    assert _compare(first, second) == []


def test_a_dp_trial_resumed_mid_way_releases_nothing_else(tmp_path, monkeypatch):
    """Each data set's trial runs, loses its last epoch (newest resume checkpoint and saved
    models deleted, as a kill would leave it) and resumes from epoch 2 with a DP estimate of
    its normalization recomputed on resume: the resumed outputs still differ only in the
    estimate's constants, and those match the uninterrupted run's."""
    make = lambda p: _config(_npz(p, normalization={"epsilon": 1.0, "delta": 1e-5}))  # noqa: E731
    first, second = _pair(tmp_path, monkeypatch, make)
    uninterrupted = _saved_model(first["dir"] / "model.pt")[0]["mean"]
    arrays, path = _arrays(), tmp_path / "data.npz"
    config = make(path)
    restored: list[int] = []
    restore = checkpoint.restore
    monkeypatch.setattr(checkpoint, "restore",
                        lambda state, parts: (restored.append(state["epoch"]), restore(state, parts)))
    for run, values in ((first, arrays), (second, _neighbour(arrays, config.data))):
        np.savez(path, **values)
        for name in ("model.pt", "last.pt", "resume/epoch-00003.pt"):
            (run["dir"] / name).unlink()
        resumed = _train(config, run["dir"], monkeypatch)
        assert len(resumed["rows"]) == 3
        run.update(summary=resumed["summary"], rows=resumed["rows"])
    assert restored == [2, 2]  # both resumed from epoch 2, not trained afresh
    assert _saved_model(first["dir"] / "model.pt")[0]["mean"] == uninterrupted
    found = _compare(first, second)
    assert found and all(".mean" in line or ".std" in line for line in found), found


def test_the_comparison_finds_exact_statistics_in_a_standard_trial(tmp_path, monkeypatch):
    """The positive control: without DP the model carries the training split's exact mean
    and std, and the same comparison reports them (and the training loss)."""
    first, second = _pair(tmp_path, monkeypatch, lambda p: _config(_npz(p), regimes=["standard"]))
    found = _compare(first, second)
    assert "run.model.pt.buffers.normalize.mean: tensors differ" in found
    assert "run.model.pt.metadata.mean[0]" in " ".join(found)
    assert any(".model.normalize.std" in line and "resume/" in line for line in found), found
    assert any(line.startswith("run.rows[0].train_loss") for line in found)


def test_a_dp_estimate_moves_with_one_example_by_at_most_its_sensitivity(tmp_path, monkeypatch):
    """data.normalization: the statistics pass through the Gaussian mechanism. With its noise
    generator fixed (same seed), the two runs' released means differ by at most the
    sensitivity over N, and everything else DP noise does not reach is identical."""
    first, second = _pair(tmp_path, monkeypatch, lambda p: _config(
        _npz(p, normalization={"epsilon": 1.0, "delta": 1e-5})))
    found = _compare(first, second)
    assert found and all("normalize.mean" in line or "normalize.std" in line
                         or ".mean[" in line or ".std[" in line for line in found), found
    meta_a, _ = _saved_model(first["dir"] / "model.pt")
    meta_b, _ = _saved_model(second["dir"] / "model.pt")
    n = round(N * 0.8)  # the training split (val_fraction 0.2)
    gap = abs(meta_a["mean"][0] - meta_b["mean"][0])
    assert 0 < gap <= normalization.sensitivity(1) / n
    np.savez(tmp_path / "data.npz", **_arrays())
    exact = data.prepare(data.DataConfig(**_npz(tmp_path / "data.npz")), seed=0).mean[0]
    assert meta_a["mean"][0] != pytest.approx(exact, abs=1e-6)  # noise was added
