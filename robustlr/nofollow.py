"""Writing into a run folder without following a symlink someone planted there.

A run folder may be shared or copied from elsewhere; a ``summary.json`` (or its ``.partial``, the
database, the log, a checkpoint, ``figures/`` or ``trials/``) that is a symlink to a user's file
must not make robustlr overwrite that file. Each file write creates a fresh file with
``O_EXCL | O_NOFOLLOW`` and renames it over the target (``rename`` replaces a link itself, never
what it points to); a target that already is a link is refused with one line, as the lock file
is. What cannot be opened without following (SQLite's files) is checked just before it is opened,
and a whole folder is checked before a resume or a report writes into it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from robustlr.errors import RunFailure

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class SymlinkRefused(RunFailure):
    """A write target in a run folder is a symbolic link (exit 1)."""


def refuse_symlink(path: Path) -> None:
    if path.is_symlink():
        raise SymlinkRefused(f"{path} is a symbolic link; robustlr does not write through links "
                             "in a run folder (remove it, or copy the folder)")


def write_atomic(path: str | os.PathLike, data: str | bytes | memoryview, *,
                 check_folder: bool = True) -> None:
    """Write ``data`` to ``path`` all at once: readers (and a crash mid-write) never see half a
    file, and neither ``path``, its ``.partial`` nor (``check_folder``) its folder is followed
    if it is a link."""
    path = Path(path)
    if check_folder:
        refuse_symlink(path.parent)
    refuse_symlink(path)
    partial = path.with_name(path.name + ".partial")
    if partial.is_symlink() or partial.exists():
        partial.unlink()  # a leftover of a killed write, or a planted link: the link goes, not its target
    raw = data.encode() if isinstance(data, str) else data
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(raw)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def open_append(path: Path):
    """``path`` opened for appending text (created if missing), refusing a link at ``path``."""
    refuse_symlink(path.parent)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW | os.O_CLOEXEC,
                             0o644)
    except OSError:
        refuse_symlink(path)  # ELOOP: name the link rather than the errno
        raise
    return os.fdopen(descriptor, "a", encoding="utf-8")


def refuse_links_below(root: Path, names: Iterable[str], folders: Iterable[str]) -> None:
    """Refuse a link at any of ``names`` in ``root``, or at ``folders`` or anything below them
    (walked without following links): the files a run writes, checked before it writes."""
    refuse_symlink(root)
    for name in names:
        refuse_symlink(root / name)
    for folder in folders:
        top = root / folder
        refuse_symlink(top)
        if not top.is_dir():
            continue
        for directory, subfolders, files in os.walk(top):  # os.walk never descends into a link
            for entry in (*subfolders, *files):
                refuse_symlink(Path(directory) / entry)
