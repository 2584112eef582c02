"""The local backend: each trial in its own worker process (at most ``workers`` at once), whose
events stream to the parent through its own pipe, so the parent writes every epoch as it ends (a
kill loses at most the epochs in flight) and never a summary before the trial's last epoch row.

A worker that dies (SIGKILL, the OOM killer, a segfault) takes only its own trial with it:
that trial is recorded ``interrupted`` (``--resume`` re-runs it) and the grid goes on in fresh
workers. ``concurrent.futures.ProcessPoolExecutor`` cannot do this: one dead worker breaks the
whole executor and fails every pending trial (docs/facts.md). Workers die with the parent
(:mod:`robustlr.runs.orphans`), so a killed run leaves no trainer behind.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

import torch

from robustlr.runs import orphans
from robustlr.runs.events import TrialEnded
from robustlr.runs.tasks import Recorder, TrialTask, interrupted, run_task

POLL_SECONDS = 0.5


def _worker(task: TrialTask, connection: Connection, parent: int | None) -> None:
    orphans.die_with_parent(parent)
    torch.set_num_threads(1)  # trials in parallel beat threads inside one (docs/facts.md)
    run_task(task, connection.send)
    connection.close()


def run_pool(tasks: list[TrialTask], workers: int, record: Recorder) -> None:
    """Each worker writes to its own pipe: a worker killed in the middle of a write breaks only
    its own pipe (a queue shared by all workers has a lock that a killed holder never frees,
    and every other worker would then wait on it for ever)."""
    context = _pool_context()
    # a forkserver's child has the server as its parent, which exits when this process does
    parent = os.getpid() if context.get_start_method() == "fork" else None
    waiting: deque[TrialTask] = deque(tasks)
    running: dict[Connection, tuple[BaseProcess, TrialTask]] = {}
    ended: set[str] = set()
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                task = waiting.popleft()
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(target=_worker, args=(task, writer, parent),
                                          name=f"robustlr-{task.trial.id}", daemon=True)
                process.start()
                writer.close()  # the worker holds the only write end: its exit is our EOF
                running[reader] = (process, task)
            ready = wait(list(running), timeout=POLL_SECONDS)
            for reader in [r for r in running if r in ready]:
                _receive(reader, running, record, ended)
    except BaseException:
        # the recorder failed (disk full) or the user interrupted: stop the workers now, not
        # after every remaining trial whose results the database could not take anyway
        for process, _ in running.values():
            process.kill()
        raise


def _receive(reader: Connection, running: dict, record: Recorder, ended: set[str]) -> None:
    process, task = running[reader]
    try:
        event = reader.recv()
    except Exception:  # EOF: the worker ended (a kill mid-write leaves a truncated message)
        del running[reader]
        reader.close()
        process.join()
        if task.trial.id not in ended:
            record(interrupted(task, _death(process.exitcode)))
            ended.add(task.trial.id)
        return
    record(event)
    if isinstance(event, TrialEnded):
        ended.add(event.trial)


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"its worker was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"its worker was killed by signal {-exitcode}"
    return f"its worker exited with code {exitcode} before the trial ended"


def _pool_context():
    """fork where it is safe (no CUDA context yet: the parent has imported everything, so a
    worker starts at once); else a forkserver that imports the trainer once, since a forked
    CUDA context breaks in the child."""
    if not torch.cuda.is_initialized():
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["robustlr.training.trial"])
    return context
