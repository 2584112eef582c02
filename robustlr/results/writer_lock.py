"""Who writes a run folder: the kernel's lock on ``results.sqlite.lock`` and, inside the database,
the writer's identity (pid, process start time, host), so that deleting the lock file, which
anyone can do without notice, does not let a second writer in beside a live one.

The identity row outlives a killed writer; it is ignored once that process is gone (the start
time tells a reused pid apart). A writer on another host cannot be checked from here: there the
lock file (on a file system that supports POSIX locks) is the only guard.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path
from typing import IO

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def acquire(path: Path, error: type[Exception]) -> IO[str]:
    """The open, locked lock file (closing it releases the lock); ``error`` is raised with one
    line when another process holds it or the file cannot be used."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as failure:
        if failure.errno == errno.ELOOP:
            raise error(f"{path} is a symbolic link; robustlr does not write through links in a "
                        "run folder (remove it)") from None
        raise error(f"cannot write in {path.parent}: {failure.strerror or failure} "
                    "(is the disk full or the folder read-only?)") from None
    handle = os.fdopen(descriptor, "r+")
    try:
        # a POSIX record lock, not flock: forked pool workers do not inherit it, so a
        # parent killed alone frees the folder at once
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as failure:
        if failure.errno not in (errno.EACCES, errno.EAGAIN):
            handle.close()
            raise
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise error(f"{path.parent} is being written by another robustlr process "
                    f"(pid {owner}); wait for it to end or use another folder") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def identity(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_started(pid)}:{socket.gethostname()}"


def live_writer(recorded: str | None) -> int | None:
    """The pid of the process ``recorded`` names if it is another live process on this host."""
    if not recorded:
        return None
    pid_text, _, rest = recorded.partition(":")
    started, _, host = rest.partition(":")
    if not pid_text.isdigit() or host != socket.gethostname():
        return None
    pid = int(pid_text)
    if pid == os.getpid() or not _alive(pid):
        return None
    return pid if _started(pid) == started else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _started(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return "?"
