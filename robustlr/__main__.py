"""``python -m robustlr``."""

from robustlr.cli.app import main

main()
