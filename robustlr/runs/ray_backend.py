"""Run a grid of trials as Ray tasks; the parent stays the database's only writer.

Each trial is one Ray task that declares what it needs (one CPU, and one GPU when the config
trains on CUDA and the cluster has GPUs), so Ray's scheduler decides where and how many run
at once. Each task is a streaming generator that yields every finished epoch and, last, the
trial's summary, which the parent records as they arrive, as the local pool's parent does
with its queue: a kill loses at most the epochs in flight, and no SQLite file is written from
two machines. Yielding never blocks the task; a ``ray.get`` inside it (on a queue actor, say)
would lend its CPU out while it waits, and Ray would start another trial beside it in a fresh
worker that imports robustlr again. A task that dies (worker killed, out of memory) is
recorded as interrupted after the events it sent (``--resume`` re-runs it), and the grid goes
on; Ray does not retry it, as the local pool does not.

A local Ray (no address) shares this environment. A cluster's nodes need the same robustlr
installed, and the run folder and any relative path in the config must mean the same place
on every node (a shared file system): tasks run in the parent's working directory where it
exists.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from dataclasses import replace
from typing import Any

import ray
import torch

from robustlr.errors import InputError
from robustlr.runs.events import TrialEnded
from robustlr.runs.tasks import Recorder, TrialTask, interrupted, run_task
from robustlr.training.trial import failed_record

POLL_SECONDS = 0.5


def run_ray(tasks: list[TrialTask], record: Recorder, *, address: str | None,
            workers: int) -> None:
    """Run ``tasks`` on the Ray cluster at ``address``, or on a local Ray of ``workers``
    CPUs started (and stopped) here; a Ray this process already joined is reused as is."""
    joined = _connect(address, workers)
    try:
        _run(tasks, record)
    finally:
        if joined:
            ray.shutdown()


def _connect(address: str | None, workers: int) -> bool:
    if ray.is_initialized():
        return False
    # worker output stays in Ray's session logs; what a trial needs to say comes back as
    # its recorded error
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:  # "local": never join a cluster found on this machine by accident
        ray.init(address="local", num_cpus=workers, include_dashboard=False, **quiet)
        return True
    check_address(address)
    try:
        ray.init(address=address, **quiet)
    except ConnectionError as error:
        auth = "auth" in str(error.__cause__ or "").lower()
        raise InputError(f"--address: cannot join the Ray cluster at {address}" + (
            " (it uses token authentication: set RAY_AUTH_MODE=token and give this machine "
            "its token, e.g. in ~/.ray/auth_token)" if auth else "")) from None
    return True


def check_address(address: str) -> None:
    """A plain HOST:PORT where nothing answers is a one-line error (else Ray retries for
    minutes, printing warnings); run_in_folder calls it before any run folder exists."""
    if not _answers(address):
        raise InputError(f"--address: nothing answers at {address}; is a Ray head running "
                         "there (ray start --head) and is this its port?")


def _answers(address: str) -> bool:
    """Whether a plain HOST:PORT accepts a connection; other forms are Ray's to judge."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return True
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError:
        return False
    return True


def _run_trial(task: TrialTask, cwd: str):
    """Yield the trial's events as they happen; the trial runs in a thread beside."""
    torch.set_num_threads(1)  # trials in parallel beat threads inside one (docs/facts.md)
    if os.path.isdir(cwd):  # relative paths in the config mean what they mean to the parent
        os.chdir(cwd)
    events: queue.SimpleQueue = queue.SimpleQueue()

    def produce() -> None:
        try:
            run_task(task, events.put)
        finally:
            events.put(None)  # the end, even if something escaped run_task

    threading.Thread(target=produce, daemon=True).start()
    while (event := events.get()) is not None:
        yield event


_remote_trial = ray.remote(max_retries=0, num_returns="streaming")(_run_trial)


def _gpus(task: TrialTask, cluster_gpus: float) -> int:
    """A GPU for a trial that trains on CUDA. Without one in the cluster, ask for none: an
    ``auto`` trial then trains on CPU, a ``cuda`` one fails with the trainer's message
    instead of waiting forever for a GPU."""
    return 1 if task.config.train.device != "cpu" and cluster_gpus >= 1 else 0


def _run(tasks: list[TrialTask], record: Recorder) -> None:
    cwd, cluster_gpus = os.getcwd(), ray.cluster_resources().get("GPU", 0)
    streams = {}
    for task in tasks:
        task = replace(task, run_dir=task.run_dir.absolute())
        needs = {"num_cpus": 1, "num_gpus": _gpus(task, cluster_gpus)}
        streams[_remote_trial.options(**needs).remote(task, cwd)] = task
    try:
        _collect(streams, record)
    except BaseException:
        # the recorder failed (disk full) or the user interrupted: free the cluster now
        for stream in streams:
            ray.cancel(stream, force=True)
        raise


def _collect(streams: dict, record: Recorder) -> None:
    """Record each stream's events in order until it ends; a stream that fails, or ends
    without its summary, records its trial as failed."""
    finished: set[str] = set()
    while streams:
        ready, _ = ray.wait(list(streams), num_returns=1, timeout=POLL_SECONDS)
        for stream in ready:
            task = streams[stream]
            try:
                event = ray.get(next(stream))  # type: ignore[arg-type]  # a streaming ref iterates
            except Exception as end:  # StopIteration, or the worker died, or never started
                del streams[stream]
                if task.trial.id not in finished:  # it may have died after its summary
                    record(_crashed(task, end))
                continue
            record(event)  # type: ignore[arg-type]  # ray.get of one ref is its value
            if isinstance(event, TrialEnded):
                finished.add(event.trial)


def _crashed(task: TrialTask, end: Exception) -> TrialEnded:
    """A stream that ended without the trial's summary: its worker or node died (Ray's system
    errors), so the trial is interrupted, not failed; an error raised by the task's own code
    is caught inside ``run_task`` and arrives as a failed summary instead."""
    if isinstance(end, StopIteration):
        return interrupted(task, "the trial ended without a summary")
    if isinstance(end, ray.exceptions.RayTaskError):  # raised by our code, outside run_task
        message = f"the Ray task raised {_describe(end)}"
        return TrialEnded(task.trial.id, "failed", failed_record(task.trial, message), message)
    return interrupted(task, f"its Ray worker died ({_describe(end)})")


def _describe(error: Exception) -> str:
    """What went wrong, without the remote traceback Ray wraps around an exception."""
    cause = error.cause if isinstance(error, ray.exceptions.RayTaskError) else None
    shown = cause if cause is not None else error
    return f"{type(shown).__name__}: {shown}"
