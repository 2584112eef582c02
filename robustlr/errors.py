"""The errors robustlr shows its users: one line each, carrying the CLI's exit code.

Every layer raises these (or a subclass); ``robustlr.cli`` alone turns them into a message on
stderr and an exit code, so a new command cannot get the mapping wrong.
"""

from __future__ import annotations


class RobustlrError(Exception):
    """A problem the user can act on; ``str(error)`` is the one line to show."""

    exit_code = 2


class InputError(RobustlrError, ValueError):
    """Bad input (config, spec, argument, data): exit 2, before anything is written."""

    exit_code = 2


class RunFailure(RobustlrError, RuntimeError):
    """A run that started but could not finish as asked (a failed trial, an unwritable
    database): exit 1; what was finished is kept."""

    exit_code = 1
