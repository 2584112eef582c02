"""Workers die with the process that started them: a killed run must not leave trainers behind
holding hundreds of megabytes each (docs/facts.md: after SIGKILL or SIGTERM of the parent, pool
workers lived on for minutes).

Linux delivers a chosen signal to a process when its parent dies (``prctl(PR_SET_PDEATHSIG)``);
elsewhere, and as a second line, a daemon thread watches the parent's pid and ends the worker
when it changes (an orphan is re-parented to init or a subreaper).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 1.0


def die_with_parent(expected_parent: int | None = None) -> None:
    """Arrange for this process to die when its parent does. ``expected_parent`` (when the
    parent's pid is known, as under fork) closes the race of a parent that died before this
    call: the process then exits at once."""
    _parent_death_signal()
    parent = os.getppid()
    if expected_parent is not None and parent != expected_parent:
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="robustlr-orphan-watch",
                     daemon=True).start()


def _parent_death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no prctl in this libc: the watchdog still works
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    os._exit(1)  # the parent is gone: nobody will read this worker's results
