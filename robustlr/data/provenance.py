"""A split's provenance, both halves: what a checkpoint records about the data it was trained
on (:func:`data_record`, written when a trial saves its model) and the check that a split
rebuilt from that record is the one the model saw (:func:`recorded_split`, before
``robustlr attack`` scores it), so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
from typing import Any

from robustlr.data import DataBundle, DataConfig, DataError, prepare
from robustlr.errors import InputError
from robustlr.plugins import require_trusted

OPTIONAL_DATA_FIELDS = ("mean", "std", "normalization")
"""Data fields left out of hashes and records when unset, so the trial ids and checkpoints of
configs written before them stay the same."""

SPLIT_SCOPES = {"test+val": ("test", "val"), "test": ("test",)}


class ProvenanceError(InputError):
    """A recorded split that cannot be rebuilt, or not as it was; ``about`` says whether the
    checkpoint's record (``"record"``) or the data asked for (``"data"``) is at fault."""

    def __init__(self, message: str, *, about: str):
        super().__init__(message)
        self.about = about


def compact(raw: dict[str, Any]) -> dict[str, Any]:
    """A dumped data config without its unset optional fields."""
    return {key: value for key, value in raw.items()
            if not (key in OPTIONAL_DATA_FIELDS and value is None)}


def split_hash(bundle: DataBundle, *, scope: str = "test+val") -> str:
    """A fingerprint of a prepared split's held-out examples (test inputs and labels,
    validation labels): equal hashes mean the same test examples. The training set is left
    out: a poisoned trial changes it. A DP trial's checkpoint fingerprints the test split
    alone (``scope="test"``): the validation split is carved from the private data."""
    digest = hashlib.sha1()
    tensors = [t for split in SPLIT_SCOPES[scope] for t in getattr(bundle, split)]
    for tensor in tensors:
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def data_record(data_config: DataConfig, bundle: DataBundle, *, seed: int,
                private: bool = False) -> dict[str, Any]:
    """What a checkpoint records about its data: the config, the trial seed and the split's
    fingerprint (a DP trial's: of the test split alone, named in ``split_scope``)."""
    raw = compact(data_config.model_dump(mode="json"))
    if raw.get("name") != "synthetic":
        raw.pop("synthetic", None)  # only valid beside name 'synthetic'
    record = {"config": raw, "seed": int(seed)}
    if private:
        return {**record, "split_hash": split_hash(bundle, scope="test"), "split_scope": "test"}
    return {**record, "split_hash": split_hash(bundle)}


def recorded_split(record: Any, *, name: str, root: str,
                   trust: frozenset[str] = frozenset()) -> DataBundle | None:
    """The data a model was trained on, rebuilt from what :func:`data_record` wrote and checked
    against its fingerprint; None for a record that holds no data config (a model saved by
    hand). ``name`` is the data asked for: it must be the one recorded. A data factory the
    record names is imported only if ``trust`` names it, as a model factory."""
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        return None
    config = {**record["config"], "root": root}
    if not isinstance(config.get("name"), str):
        raise ProvenanceError("the checkpoint's data record names no dataset", about="record")
    require_trusted(config["name"], (), trust, where="MODEL_PATH: the checkpoint's data")
    trained_on = config.get("path") or config.get("factory") or config["name"]
    if name not in {config["name"], trained_on}:
        raise ProvenanceError(f"the model was trained on {trained_on!r}, not {name!r}; "
                              f"evaluate it on {trained_on!r} (its split is in the checkpoint)",
                              about="data")
    try:
        bundle = prepare(DataConfig(**config), seed=int(record.get("seed", 0)))
    except (DataError, ValueError) as error:
        raise ProvenanceError(str(error), about="data") from None
    scope = record.get("split_scope", "test+val")
    if scope not in SPLIT_SCOPES or split_hash(bundle, scope=scope) != record.get("split_hash"):
        raise ProvenanceError(f"the {trained_on} split rebuilt from the checkpoint's data config "
                              "is not the one the model was trained on (the data changed); "
                              "refusing to score examples that may overlap its training set",
                              about="data")
    return bundle
