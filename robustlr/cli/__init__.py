"""The ``robustlr`` command line: one module per command, errors mapped to exit codes in
:mod:`robustlr.cli.app`."""

from robustlr.cli.app import main

__all__ = ["main"]
