"""Run-folder writes that never follow a link: see :mod:`robustlr.nofollow` (below the results
layer, so that checkpoints and the run log use the same rule)."""

from robustlr.nofollow import NOFOLLOW, SymlinkRefused, refuse_symlink, write_atomic

__all__ = ["NOFOLLOW", "SymlinkRefused", "refuse_symlink", "write_atomic"]
