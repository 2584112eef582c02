"""The run log (``run.log`` in the run folder): one context that every way of running a grid
(``robustlr run`` on the local pool or Ray, ``robustlr train`` on several processes) opens
around its work, so the file, its format and the logger's settings are written once."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from robustlr.nofollow import open_append

LOG_FILE = "run.log"

log = logging.getLogger("robustlr")


class _LogFile(logging.FileHandler):
    """The run log, appended to without following a link planted at its name."""

    def _open(self):
        return open_append(Path(self.baseFilename))


@contextlib.contextmanager
def run_log(run_dir: Path) -> Iterator[logging.Logger]:
    """Log robustlr's messages at INFO and above to ``run_dir/run.log`` while inside."""
    handler = _LogFile(run_dir / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # ART configures the root logger; the run log is enough
    try:
        yield log
    finally:
        log.removeHandler(handler)
        handler.close()
