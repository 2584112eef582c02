"""Where each dataset's arrays come from: float32 inputs in [0, 1], int64 labels.

A source returns the official training split and, where the dataset has one, the official
test split. Nothing here splits, normalizes or subsamples; see :mod:`robustlr.data`.

Every built-in dataset is one entry of :data:`DATA_SOURCES`, registered on its loader with
the facts the config checks read (input channels, an official test split, downloadable)::

    @DATA_SOURCES.register("mydata", channels=1, official_test=True)
    def _mydata(config: SourceOptions) -> Source: ...
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from robustlr.data.pickles import load_batch
from robustlr.errors import InputError
from robustlr.spec import Registry


class DataError(InputError):
    """A dataset that cannot be loaded; the message is one line meant for the user."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """The dataset's files are not under ``data.root`` and downloading is off."""


@dataclass(frozen=True)
class Source:
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


class SourceOptions(Protocol):
    """The fields of ``data:`` a loader reads (a :class:`robustlr.data.DataConfig`)."""

    name: str
    root: str
    download: bool
    image_size: int | None
    path: str | None
    synthetic: Any


@dataclass(frozen=True)
class SourceFacts:
    """What the config's checks know of a dataset before loading it."""

    channels: int | None = None  # input channels when fixed (synthetic: its own shape)
    official_test: bool = False  # its own test split: data.test_fraction does not apply
    downloadable: bool = False  # data.download: true fetches it


Loader = Callable[[SourceOptions], Source]


class SourceRegistry(Registry):
    """The built-in datasets by name, each with its :class:`SourceFacts`; a name that is an
    import path (``"package.module:factory"``) is the user's and is not registered."""

    def __init__(self) -> None:
        super().__init__("dataset")
        self._facts: dict[str, SourceFacts] = {}

    def register(self, name: str, factory: Loader | None = None, *,
                 channels: int | None = None, official_test: bool = False,
                 downloadable: bool = False) -> Any:
        """Register a loader under ``name`` with its facts; usable as a decorator."""
        self._facts[name] = SourceFacts(channels, official_test, downloadable)
        return super().register(name, factory)

    def facts(self, name: str) -> SourceFacts:
        """The facts of ``name``; a user's factory has none fixed."""
        return self._facts.get(name, SourceFacts())

    def loader(self, name: str) -> Loader:
        return self.entry(name).factory


DATA_SOURCES = SourceRegistry()


def _arrays(x, y) -> tuple[np.ndarray, np.ndarray]:
    return np.ascontiguousarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)


@DATA_SOURCES.register("digits", channels=1)
def _digits_source(config: SourceOptions) -> Source:
    """scikit-learn's 8x8 digits (ships with scikit-learn, nothing is downloaded)."""
    return _digits()


@functools.lru_cache(maxsize=1)
def _digits() -> Source:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return Source(*_arrays(bunch.data.reshape(-1, 1, 8, 8) / 16.0, bunch.target))


MNIST1D_SCALE = 12.0
"""mnist1d's generator standardizes the signals (mean 0, std 1; extremes about -5.5 and 4.6 at
the default arguments). robustlr maps them to [0, 1] with the fixed affine map
``x01 = clip(x / 12 + 0.5, 0, 1)``, which clips nothing at the defaults."""


@DATA_SOURCES.register("mnist1d", channels=1, official_test=True)
def _mnist1d_source(config: SourceOptions) -> Source:
    """MNIST-1D (Greydanus & Kobak, 2020), generated offline."""
    return _mnist1d()


@functools.lru_cache(maxsize=1)
def _mnist1d() -> Source:
    # make_dataset is pure numpy and offline; get_dataset() would download and write a pickle
    # into the working directory. make_dataset seeds numpy's and Python's global generators
    # (with the dataset's own seed, 42), so their states are restored afterwards.
    from mnist1d.data import get_dataset_args, make_dataset

    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)

    def scale(x: np.ndarray) -> np.ndarray:
        return np.clip(x / MNIST1D_SCALE + 0.5, 0.0, 1.0)[:, None, :]

    return Source(*_arrays(scale(data["x"]), data["y"]), *_arrays(scale(data["x_test"]), data["y_test"]))


@DATA_SOURCES.register("synthetic")
def _synthetic_source(config: SourceOptions) -> Source:
    """Seeded Gaussian class clusters (``data.synthetic``), for tests and smoke runs."""
    return _synthetic(config.synthetic)


def _synthetic(options: Any) -> Source:
    rng = np.random.default_rng(options.seed)
    centres = rng.uniform(0.2, 0.8, size=(options.num_classes, *options.shape))
    y = np.arange(options.num_examples) % options.num_classes
    rng.shuffle(y)
    x = centres[y] + rng.normal(0.0, options.noise, size=(options.num_examples, *options.shape))
    return Source(*_arrays(np.clip(x, 0.0, 1.0), y))


def _not_found(config: SourceOptions, where: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"dataset '{config.name}' not found under data.root={config.root!r} (looked for {where}); "
        "set download: true to fetch it, or point data.root at a folder that holds it")


# stacked decorators apply bottom-up: mnist is registered before fashion_mnist
@DATA_SOURCES.register("fashion_mnist", channels=1, official_test=True, downloadable=True)
@DATA_SOURCES.register("mnist", channels=1, official_test=True, downloadable=True)
def _torchvision_mnist(config: SourceOptions) -> Source:
    """MNIST or Fashion-MNIST from torchvision's files under data.root."""
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[config.name]
    try:
        train = cls(config.root, train=True, download=config.download)
        test = cls(config.root, train=False, download=config.download)
    except RuntimeError as error:
        if not config.download:
            raise _not_found(config, os.path.join(config.root, cls.__name__, "raw")) from None
        raise DataError(f"dataset '{config.name}': download failed: "
                        f"{str(error).splitlines()[0]}") from None
    return Source(*_arrays(train.data.numpy()[:, None] / 255.0, train.targets.numpy()),
                  *_arrays(test.data.numpy()[:, None] / 255.0, test.targets.numpy()))


CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


@DATA_SOURCES.register("cifar10", channels=3, official_test=True, downloadable=True)
def _cifar10(config: SourceOptions) -> Source:
    """CIFAR-10 from its python batches under data.root (read without unpickling code)."""
    # The python pickle batches are read directly (torchvision's class insists on the official
    # checksums); torchvision is used only to download and verify.
    folder = os.path.join(config.root, CIFAR10_FOLDER)
    files = [os.path.join(folder, name) for name in CIFAR10_TRAIN + ("test_batch",)]
    if config.download:
        from torchvision.datasets import CIFAR10

        try:
            CIFAR10(config.root, train=True, download=True)
        except Exception as error:  # network and archive errors come in many types
            raise DataError(f"dataset 'cifar10': download failed: {str(error).splitlines()[0]}") from None
    if not all(os.path.isfile(path) for path in files):
        raise _not_found(config, folder)

    def read(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for path in paths:
            with open(path, "rb") as handle:  # never pickle.load: the folder is untrusted
                batch = load_batch(handle, path)
            xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch.get("labels", batch.get("fine_labels"))))
        return _arrays(np.concatenate(xs) / 255.0, np.concatenate(ys))

    return Source(*read(files[:-1]), *read(files[-1:]))


@DATA_SOURCES.register("imagefolder")
def _imagefolder(config: SourceOptions) -> Source:
    """A folder of class sub-folders of images (torchvision's ImageFolder) at data.root."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    if not os.path.isdir(config.root):
        raise DatasetNotFoundError(f"dataset 'imagefolder': data.root={config.root!r} is not a "
                                   "folder; point data.root at a folder of class sub-folders of images")
    steps = [transforms.Resize((config.image_size, config.image_size))] if config.image_size else []
    try:
        folder = ImageFolder(config.root, transform=transforms.Compose(steps + [transforms.PILToTensor()]))
    except (FileNotFoundError, RuntimeError) as error:
        raise DataError(f"dataset 'imagefolder' at data.root={config.root!r}: "
                        f"{str(error).splitlines()[0]}") from None
    images = [folder[i][0].numpy() for i in range(len(folder))]
    shapes = sorted({image.shape for image in images})
    if len(shapes) > 1:
        raise DataError(f"dataset 'imagefolder': images have different sizes {shapes[:3]}; "
                        "set data.image_size to resize them")
    return Source(*_arrays(np.stack(images) / 255.0, folder.targets))
