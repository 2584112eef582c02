"""The ``robustlr`` command group and the one place where errors become exit codes.

Commands raise :class:`robustlr.errors.RobustlrError` subclasses; the group prints their one
line on stderr and exits with the code the error carries (2: bad input, 1: a run that could
not finish). Each command lives in its own module and imports torch only when it runs, so
``robustlr --help`` starts at once.
"""

from __future__ import annotations

from typing import Any

import click

from robustlr.errors import RobustlrError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RobustlrError as error:
            click.echo(f"robustlr: error: {error}", err=True)
            raise click.exceptions.Exit(error.exit_code) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="robustlr")
def main() -> None:
    """Learning-rate schedules as the experimental variable under adversarial, privacy and
    poisoning threats."""


def _register() -> None:
    from robustlr.cli.attack import attack
    from robustlr.cli.data import data
    from robustlr.cli.export import export
    from robustlr.cli.gate import compare, gate
    from robustlr.cli.lr_find import lr_find
    from robustlr.cli.report import report
    from robustlr.cli.reproduce import reproduce
    from robustlr.cli.run import run
    from robustlr.cli.schedules import schedules
    from robustlr.cli.train import train

    for command in (run, schedules, report, attack, gate, compare, lr_find, train, export, data,
                    reproduce):
        main.add_command(command)


_register()
