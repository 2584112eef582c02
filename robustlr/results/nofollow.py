"""Writing into a run folder without following a symlink someone planted there.

A run folder may be shared or copied from elsewhere; a ``summary.json.partial`` (or a lock file,
or ``figures/``) that is a symlink to a user's file must not make robustlr overwrite that file.
Each write creates a fresh file with ``O_EXCL | O_NOFOLLOW`` and renames it over the target:
``rename`` replaces a symlink itself, never what it points to.
"""

from __future__ import annotations

import os
from pathlib import Path

from robustlr.errors import RunFailure

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class SymlinkRefused(RunFailure):
    """A write target in a run folder is a symbolic link (exit 1)."""


def refuse_symlink(path: Path) -> None:
    if path.is_symlink():
        raise SymlinkRefused(f"{path} is a symbolic link; robustlr does not write through links "
                             "in a run folder (remove it, or copy the folder)")


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` to ``path`` all at once: readers (and a crash mid-write) never see half a
    file, and neither ``path``, its ``.partial`` nor its folder is followed if it is a link."""
    path = Path(path)
    refuse_symlink(path.parent)
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
