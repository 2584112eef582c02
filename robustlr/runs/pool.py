"""The local backend: each trial in its own worker process (at most ``workers`` at once), whose
events stream to the parent through one queue, so the parent writes every epoch as it ends (a
kill loses at most the epochs in flight) and never a summary before the trial's last epoch row.

A worker that dies (SIGKILL, the OOM killer, a segfault) takes only its own trial with it:
that trial is recorded ``interrupted`` (``--resume`` re-runs it) and the grid goes on in fresh
workers. ``concurrent.futures.ProcessPoolExecutor`` cannot do this: one dead worker breaks the
whole executor and fails every pending trial (FINDINGS). Workers die with the parent
(:mod:`robustlr.runs.orphans`), so a killed run leaves no trainer behind.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from queue import Empty

import torch

from robustlr.runs import orphans
from robustlr.runs.events import TrialEnded
from robustlr.runs.tasks import Recorder, TrialTask, execute, interrupted

POLL_SECONDS = 0.2


def _worker(task: TrialTask, queue, parent: int | None) -> None:
    orphans.die_with_parent(parent)
    torch.set_num_threads(1)  # trials in parallel beat threads inside one (FINDINGS)
    execute(task, queue.put)
    queue.close()
    queue.join_thread()  # every event is in the pipe before the process reports its exit


def run_pool(tasks: list[TrialTask], workers: int, record: Recorder) -> None:
    context = _pool_context()
    queue = context.Queue()
    # a forkserver's child has the server as its parent, which exits when this process does
    parent = os.getpid() if context.get_start_method() == "fork" else None
    waiting: deque[TrialTask] = deque(tasks)
    running: dict[multiprocessing.process.BaseProcess, TrialTask] = {}
    ended: set[str] = set()
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                task = waiting.popleft()
                process = context.Process(target=_worker, args=(task, queue, parent),
                                          name=f"robustlr-{task.trial.id}", daemon=True)
                process.start()
                running[process] = task
            _record_until(queue, record, ended, timeout=POLL_SECONDS)
            for process in [p for p in running if not p.is_alive()]:
                process.join()
                task = running.pop(process)
                _drain(queue, record, ended)  # what it sent before it ended
                if task.trial.id not in ended:
                    record(interrupted(task, _death(process.exitcode)))
                    ended.add(task.trial.id)
    except BaseException:
        # the recorder failed (disk full) or the user interrupted: stop the workers now, not
        # after every remaining trial whose results the database could not take anyway
        for process in running:
            process.kill()
        raise


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"its worker was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"its worker was killed by signal {-exitcode}"
    return f"its worker exited with code {exitcode} before the trial ended"


def _record_until(queue, record: Recorder, ended: set[str], *, timeout: float) -> None:
    """Record the next event (waiting up to ``timeout``) and any that follow at once."""
    try:
        event = queue.get(timeout=timeout)
    except Empty:
        return
    _apply(event, record, ended)
    _drain(queue, record, ended, wait=0.0)


def _drain(queue, record: Recorder, ended: set[str], wait: float = 0.1) -> None:
    while True:
        try:
            event = queue.get(timeout=wait) if wait else queue.get_nowait()
        except Empty:
            return
        _apply(event, record, ended)


def _apply(event, record: Recorder, ended: set[str]) -> None:
    record(event)
    if isinstance(event, TrialEnded):
        ended.add(event.trial)


def _pool_context():
    """fork where it is safe (no CUDA context yet: the parent has imported everything, so a
    worker starts at once); else a forkserver that imports the trainer once, since a forked
    CUDA context breaks in the child."""
    if not torch.cuda.is_initialized():
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["robustlr.training.trial"])
    return context
