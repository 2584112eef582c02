"""Resume checkpoints (``train.checkpoint_every: N``): everything a trial needs to continue
exactly where it was, written atomically every N epochs into ``trials/<id>/resume/``.

A checkpoint holds the model, the optimizer, the loss scaler, the schedule clock (the steps
taken, inside the loop's progress) and the plateau tracker, every RNG (torch, CUDA, numpy,
Python and the batch-order generator), the regime's state (e.g. the attack generator), the
weight average, the probes' state (robust-accuracy history, best weights) and the epoch rows
so far. Files are written to a temporary name, fsynced and renamed (``os.replace`` is atomic)
in a background thread, and the two latest are kept: a torn or unreadable latest falls back
to the one before. They
load with ``weights_only=True`` (tensors, numbers, strings, lists and dicts only).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustlr.nofollow import NOFOLLOW, refuse_symlink

log = logging.getLogger("robustlr")

FORMAT, KEEP = 1, 2


@dataclass
class Parts:
    """The live objects a checkpoint saves and restores."""

    model: torch.nn.Module  # the plain module (regime.trained_model)
    optimizer: torch.optim.Optimizer
    regime: Any
    recipe: Any
    generator: torch.Generator  # batch order
    device: torch.device
    tracker: Any = None  # a plateau schedule's tracker
    averager: Any = None
    probes: list = field(default_factory=list)


def fingerprint(config_text: str, trial_id: str) -> str:
    """What a checkpoint must match to be resumed: the resolved config and the trial."""
    return hashlib.sha1(f"{trial_id}\n{config_text}".encode()).hexdigest()


def _rng_state(parts: Parts) -> dict[str, Any]:
    kind, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), position,
                      has_gauss, gauss],
            "python": [version, list(internal), gauss_next],
            "batches": parts.generator.get_state()}


def _restore_rng(state: dict[str, Any], parts: Parts) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    parts.generator.set_state(state["batches"])


def _tracker_state(tracker) -> dict[str, Any] | None:
    return None if tracker is None else tracker.state_dict()


class Writer:
    """Writes a trial's checkpoints into ``directory``: the state is serialised at once (it
    must be the state of this moment), the file written, fsynced and renamed in a background
    thread so the disk's latency stays off the training loop. One write at a time; ``wait``
    raises a failed write's error (e.g. a full disk)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, *, epoch: int, parts: Parts, progress: dict[str, Any], key: str) -> None:
        """Checkpoint epoch ``epoch`` and keep the ``KEEP`` latest."""
        state = {
            "format": FORMAT, "fingerprint": key, "epoch": epoch, "progress": progress,
            "model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
            "recipe": parts.recipe.state_dict(), "regime": parts.regime.state_dict(),
            "tracker": _tracker_state(parts.tracker), "rng": _rng_state(parts),
            "averager": parts.averager.state_dict() if parts.averager is not None else None,
            "probes": [probe.state_dict() for probe in parts.probes]}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(epoch, buffer.getbuffer()),
                                        name=f"checkpoint-{epoch}")
        self._thread.start()

    def _write(self, epoch: int, data: memoryview) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            refuse_symlink(self.directory)
            path = self.directory / f"epoch-{epoch:05d}.pt"
            refuse_symlink(path)
            temporary = self.directory / f".{path.name}.tmp"
            temporary.unlink(missing_ok=True)  # a torn write's leftover, or a planted link itself
            # a fresh file, never a link planted under the temporary name
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)  # atomic: a reader sees the old file or the new one
            for old in checkpoints(self.directory)[KEEP:]:
                old.unlink(missing_ok=True)
        except BaseException as error:  # raised in the loop's thread by wait()
            self._error = error

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoint files, newest first (temporary files are never listed)."""
    return sorted(directory.glob("epoch-*.pt"), reverse=True) if directory.is_dir() else []


def load(directory: Path, *, key: str) -> dict[str, Any] | None:
    """The newest readable checkpoint made for ``key``, or None (a fresh start)."""
    for path in checkpoints(directory):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a torn file: any unpickling error, fall back
            log.warning("checkpoint %s is unreadable (%s); trying the one before", path,
                        type(error).__name__)
            continue
        if state.get("format") != FORMAT or state.get("fingerprint") != key:
            log.warning("checkpoint %s belongs to another config or trial; ignored", path)
            continue
        return state
    return None


def restore(state: dict[str, Any], parts: Parts) -> None:
    """Put ``state`` back into the live objects (after ``prepare`` built them)."""
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.recipe.load_state_dict(state["recipe"])
    parts.regime.load_state_dict(state["regime"])
    if parts.tracker is not None and state["tracker"] is not None:
        parts.tracker.load_state_dict(state["tracker"])
    if parts.averager is not None and state["averager"] is not None:
        parts.averager.load_state_dict(state["averager"])
    for probe, probe_state in zip(parts.probes, state["probes"]):
        probe.load_state_dict(probe_state)
    _restore_rng(state["rng"], parts)


def clear(directory: Path) -> None:
    """Drop a finished trial's checkpoints (a large model's are hundreds of MB each)."""
    for path in checkpoints(directory):
        path.unlink(missing_ok=True)
    for path in directory.glob(".epoch-*.tmp") if directory.is_dir() else []:
        path.unlink(missing_ok=True)
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
