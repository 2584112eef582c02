"""The ``data:`` section of an experiment config, validated once at the edge."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DATASETS = ("digits", "mnist1d", "synthetic", "mnist", "fashion_mnist", "cifar10", "imagefolder")
DatasetName = Literal["digits", "mnist1d", "synthetic", "mnist", "fashion_mnist", "cifar10",
                      "imagefolder"]
DOWNLOADABLE = ("mnist", "fashion_mnist", "cifar10")
OFFICIAL_TEST = ("mnist1d", "mnist", "fashion_mnist", "cifar10")
"""Datasets with their own test split; ``test_fraction`` does not apply to them."""


class SyntheticOptions(BaseModel):
    """Seeded Gaussian class clusters in [0, 1] (for tests and smoke runs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_examples: int = Field(600, ge=2)
    num_classes: int = Field(3, ge=2)
    shape: tuple[int, ...] = (1, 8, 8)
    noise: float = Field(0.15, ge=0.0)
    """Standard deviation of each cluster around its centre (centres are uniform in [0.2, 0.8])."""
    seed: int = 0
    """Seed of the generator (the data itself, not the split)."""

    @field_validator("shape")
    @classmethod
    def _shape(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) not in (2, 3) or any(d < 1 for d in shape):
            raise ValueError("data.synthetic.shape must be (C, L) or (C, H, W) with positive "
                             f"sizes, got {list(shape)}")
        return shape


class DataConfig(BaseModel):
    """Which dataset, how it is split, and where its files live.

    Fractions are of the whole dataset for digits/synthetic/imagefolder; for datasets with an
    official test split (mnist1d, mnist, fashion_mnist, cifar10) ``test_fraction`` is ignored
    and ``val_fraction`` is the share of the official training split held out.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: DatasetName = "digits"
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    root: str = "data"
    download: bool = False
    limit: int | None = Field(None, ge=1)
    """Cap on training examples (a random subset drawn with the trial seed), for quick runs."""
    split_seed: int = 0
    """Seed of the train/validation/test split; independent of the trial seed."""
    image_size: int | None = Field(None, ge=1)
    """imagefolder only: resize images to image_size x image_size (else all must match)."""
    synthetic: SyntheticOptions = SyntheticOptions()

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
        if self.name not in OFFICIAL_TEST and self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("data.val_fraction + data.test_fraction must be below 1, got "
                             f"{self.val_fraction} + {self.test_fraction}")
        if self.download and self.name not in DOWNLOADABLE:
            raise ValueError(f"data.download applies only to {', '.join(DOWNLOADABLE)}, "
                             f"not {self.name!r}")
        if "synthetic" in self.model_fields_set and self.name != "synthetic":
            raise ValueError(f"data.synthetic applies only to name 'synthetic', not {self.name!r}")
        if self.image_size is not None and self.name != "imagefolder":
            raise ValueError(f"data.image_size applies only to name 'imagefolder', not {self.name!r}")
        return self
