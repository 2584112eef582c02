"""``python -m robustlr.cli`` (what ``torchrun -m robustlr.cli train`` runs)."""

from robustlr.cli.app import main

main()
