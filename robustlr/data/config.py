"""The ``data:`` section of an experiment config, validated once at the edge."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from robustlr.data.sources import DATA_SOURCES
from robustlr.plugins import is_import_path

MAX_SYNTHETIC_VALUES = 2**27

class SyntheticOptions(BaseModel):
    """Seeded Gaussian class clusters in [0, 1] (for tests and smoke runs)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # generated in memory: 10 million examples is already far beyond a smoke test
    num_examples: int = Field(600, ge=2, le=10_000_000)
    num_classes: int = Field(3, ge=2)
    shape: tuple[int, ...] = (1, 8, 8)
    noise: float = Field(0.15, ge=0.0)
    """Standard deviation of each cluster around its centre (centres are uniform in [0.2, 0.8])."""
    seed: int = Field(0, ge=0, le=2**32 - 1)
    """Seed of the generator (the data itself, not the split)."""

    @field_validator("shape")
    @classmethod
    def _shape(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) not in (2, 3) or any(d < 1 for d in shape):
            raise ValueError("data.synthetic.shape must be (C, L) or (C, H, W) with positive "
                             f"sizes, got {list(shape)}")
        return shape

    @model_validator(mode="after")
    def _fits_in_memory(self) -> SyntheticOptions:
        values = self.num_examples * math.prod(self.shape)
        if values > MAX_SYNTHETIC_VALUES:  # generated as float64 before anything else runs
            raise ValueError(f"data.synthetic: num_examples x shape is {values:.3g} values; at "
                             f"most {MAX_SYNTHETIC_VALUES:.3g} (1 GiB) are generated in memory")
        return self


class NormalizationOptions(BaseModel):
    """``data.normalization``: how a DP trial estimates its normalization constants when no
    public ones exist (see data/normalization.py and docs/privacy-ledger.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epsilon: float = Field(gt=0)
    """The estimate's share of the privacy budget (Gaussian mechanism, one release)."""
    delta: float | None = Field(None, gt=0, lt=1)
    """Its delta; default 0.01 / N, a tenth of the dp regime's default total (0.1 / N)."""


class DataConfig(BaseModel):
    """Which dataset, how it is split, and where its files live.

    Fractions are of the whole dataset for digits/synthetic/imagefolder; for datasets with an
    official test split (mnist1d, mnist, fashion_mnist, cifar10) ``test_fraction`` is ignored
    and ``val_fraction`` is the share of the official training split held out.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = "digits"
    """A built-in dataset (``DATA_SOURCES``, data/sources.py) or ``"package.module:factory"`` (see data/files.py)."""
    path: str | None = None
    """npz only: the .npz file (arrays x, y, optionally x_test, y_test)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of a dataset factory (name ``"package.module:factory"``)."""
    augment: list[str | dict[str, Any]] = Field(default_factory=list)
    """Training-time augmentation specs, applied in order (see data/augment.py)."""
    stream: bool | Literal["auto"] = "auto"
    """Stream the training split through a DataLoader (true), hold it in device memory
    (false), or stream when it is above ``stream_above_gb`` as float32 (auto)."""
    stream_above_gb: float = Field(4.0, gt=0)
    workers: int = Field(4, ge=0)
    """DataLoader worker processes when streaming (0: load in the main process)."""
    val_fraction: float = 0.15
    public_validation: bool = False
    """The validation split is public data: choosing an epoch or an LR scale on it costs no
    privacy (by default it is carved from the private training data; docs/privacy-ledger.md)."""
    test_fraction: float = 0.2
    root: str = "data"
    download: bool = False
    limit: int | None = Field(None, ge=1)
    """Cap on training examples (a random subset drawn with the trial seed), for quick runs."""
    split_seed: int = Field(0, ge=0, le=2**32 - 1)  # scikit-learn's range for a seed
    """Seed of the train/validation/test split; independent of the trial seed."""
    image_size: int | None = Field(None, ge=1)
    """imagefolder only: resize images to image_size x image_size (else all must match)."""
    synthetic: SyntheticOptions = SyntheticOptions()
    mean: tuple[float, ...] | None = None
    """Public per-channel mean of the inputs (with ``std``): every regime's model uses these
    constants instead of the training split's statistics (a DP trial must not use those)."""
    std: tuple[float, ...] | None = None
    normalization: NormalizationOptions | None = None
    """DP trials without public ``mean``/``std``: estimate them with this (epsilon, delta)
    instead of the dataset's public default (data/normalization.py)."""

    def __hash__(self) -> int:  # options and augment are a dict and a list; trial.py caches by config
        return hash(self.model_dump_json())

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value not in DATA_SOURCES and not is_import_path(value):
            raise ValueError(f"data.name: unknown dataset {value!r}; allowed: {', '.join(DATA_SOURCES.names())} "
                             "or an import path 'package.module:factory'")
        return value

    @field_validator("val_fraction")
    @classmethod
    def _val(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {value}")
        return value

    @field_validator("test_fraction")
    @classmethod
    def _test(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(f"data.test_fraction must be in (0, 1), got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        facts = DATA_SOURCES.facts(self.name)
        if not facts.official_test and self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("data.val_fraction + data.test_fraction must be below 1, got "
                             f"{self.val_fraction} + {self.test_fraction}")
        if self.download and not facts.downloadable:
            downloadable = [name for name in DATA_SOURCES.names() if DATA_SOURCES.facts(name).downloadable]
            raise ValueError(f"data.download applies only to {', '.join(downloadable)}, "
                             f"not {self.name!r}")
        if "synthetic" in self.model_fields_set and self.name != "synthetic":
            raise ValueError(f"data.synthetic applies only to name 'synthetic', not {self.name!r}")
        if (self.name == "npz") != (self.path is not None):
            raise ValueError("data.path: name 'npz' needs path (the .npz file), and path applies "
                             f"only to name 'npz', not {self.name!r}")
        if self.options and not is_import_path(self.name):
            raise ValueError("data.options applies only to a dataset factory "
                             f"('package.module:factory'), not {self.name!r}")
        if self.image_size is not None and self.name != "imagefolder":
            raise ValueError(f"data.image_size applies only to name 'imagefolder', not {self.name!r}")
        self._check_constants()
        return self

    def _check_constants(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise ValueError("data.mean and data.std go together: give both (one value per "
                             "input channel) or neither")
        if self.mean is None or self.std is None:
            return
        if self.normalization is not None:
            raise ValueError("data.normalization applies only without data.mean/data.std "
                             "(public constants cost no privacy budget)")
        channels = (self.synthetic.shape[0] if self.name == "synthetic"
                    else DATA_SOURCES.facts(self.name).channels)
        for name, values in (("mean", self.mean), ("std", self.std)):
            if not values or (channels is not None and len(values) != channels):
                raise ValueError(f"data.{name} needs one value per input channel "
                                 f"({channels or 'at least one'}), got {len(values)}")
        if len(self.mean) != len(self.std):
            raise ValueError(f"data.std needs as many values as data.mean ({len(self.mean)}), "
                             f"got {len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"data.std must be > 0 for every channel, got {list(self.std)}")
