"""The per-channel mean and std a model's first layer is built with, and what they cost.

Every model stores its normalization constants (``normalize.mean``/``normalize.std``) in its
weights and checkpoints, so they are released with it. The training split's exact
statistics are a deterministic function of every training example: a DP-trained model that
carries them is not DP for any finite epsilon. So:

- ``data.mean``/``data.std`` given: public constants, for every regime (cost nothing).
- otherwise a non-DP trial keeps the training split's exact statistics (as always);
- a DP trial uses, in this order: a DP estimate when ``data.normalization`` asks for one (an
  explicit request beats a default), the dataset's documented public default
  (:data:`PUBLIC_DEFAULTS`), else it is refused in one line naming ``data.mean``/``data.std``.

Each choice is one privacy-ledger entry named ``normalization`` in ``DataBundle.ledger``
(docs/privacy-ledger.md). Data preparation is cached per (data config, seed) and shared by
every regime of a grid, so the DP choice is applied per trial (:func:`for_trial`), where the
regime is known; non-DP trials pass through untouched.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import torch

from robustlr.data.config import DataConfig
from robustlr.data.sources import DataError
from robustlr.privacy.gaussian import gaussian_noise_multiplier
from robustlr.privacy.ledger import Entry

if TYPE_CHECKING:
    from robustlr.data.bundle import DataBundle

Stats = tuple[tuple[float, ...], tuple[float, ...]]

UNIFORM = (0.5, 0.5)
"""A data-independent default: the midpoint and half-width of [0, 1] (inputs map to
[-1, 1]). mnist1d is built as ``x / 12 + 0.5`` and synthetic draws its class centres
uniformly in [0.2, 0.8]: both are centred at 0.5 by construction."""

PUBLIC_DEFAULTS: dict[str, tuple[tuple[float, ...], tuple[float, ...], str]] = {
    "mnist": ((0.1307,), (0.3081,), "pytorch/examples mnist/main.py: "
              "transforms.Normalize((0.1307,), (0.3081,))"),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                "pytorch/tutorials PR #2405 (cifar10_tutorial.py); kuangliu/pytorch-cifar "
                "issue #19"),
    "fashion_mnist": ((UNIFORM[0],), (UNIFORM[1],), "data-independent: mean 0.5, std 0.5"),
    "digits": ((UNIFORM[0],), (UNIFORM[1],), "data-independent: mean 0.5, std 0.5"),
    "mnist1d": ((UNIFORM[0],), (UNIFORM[1],), "data-independent: mean 0.5, std 0.5 (the "
                "inputs are x / 12 + 0.5)"),
    "synthetic": ((), (), "data-independent: mean 0.5, std 0.5 per channel (class centres "
                  "uniform in [0.2, 0.8])"),
}
"""Per-dataset constants fixed before any data is seen, with where they are written. User
data (npz, imagefolder, a factory) has none: give ``data.mean``/``data.std``."""

STD_FLOOR = 0.01
"""Least std a DP estimate may come out as (noise can push the variance to or below 0)."""
_NOISE_SEED_OFFSET = 7_919  # the estimate's own generator: the training RNG stream is unchanged


def exact(x: torch.Tensor) -> Stats:
    """The exact per-channel mean and std of ``x`` (N, C, ...): for non-DP trials only."""
    dims = [0] + list(range(2, x.dim()))
    mean = x.double().mean(dim=dims)
    std = x.double().std(dim=dims, correction=0).clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())


def exact_entry(*, streamed: bool = False) -> Entry:
    """What exact statistics of the training split cost: no finite epsilon."""
    return Entry(name="normalization", mechanism="none", epsilon=math.inf,
                 detail={"source": "training split (sample)" if streamed else "training split"})


def configured(config: DataConfig) -> tuple[Stats, Entry] | None:
    """The user's public constants (``data.mean``/``data.std``), if given."""
    if config.mean is None or config.std is None:
        return None
    return (tuple(config.mean), tuple(config.std)), Entry(
        name="normalization", mechanism="public", epsilon=0.0,
        detail={"source": "data.mean/data.std", "mean": list(config.mean),
                "std": list(config.std)})


def public_default(name: str, channels: int) -> tuple[Stats, Entry] | None:
    if name not in PUBLIC_DEFAULTS:
        return None
    mean, std, source = PUBLIC_DEFAULTS[name]
    if not mean:  # one value for any number of channels
        mean, std = (UNIFORM[0],) * channels, (UNIFORM[1],) * channels
    return (mean, std), Entry(name="normalization", mechanism="public", epsilon=0.0,
                              detail={"source": f"public default for {name!r}: {source}",
                                      "mean": list(mean), "std": list(std)})


def sensitivity(channels: int) -> float:
    """L2 sensitivity of the released sums: each example adds a vector in [0, 1]^(2C) (its
    per-channel mean and mean square, inputs clamped to [0, 1]), so replacing, adding or
    removing one example moves the sum by at most sqrt(2C)."""
    return math.sqrt(2 * channels)


def per_example(x: torch.Tensor) -> torch.Tensor:
    """Each example's per-channel mean and mean square of its inputs clamped to [0, 1]:
    shape (N, 2C), every entry in [0, 1]."""
    x = x.double().clamp(0.0, 1.0).flatten(2)
    return torch.cat([x.mean(dim=2), (x * x).mean(dim=2)], dim=1)


def dp_estimate(x: torch.Tensor, *, epsilon: float, delta: float,
                generator: torch.Generator) -> tuple[Stats, Entry]:
    """Mean and std from the per-channel sums of :func:`per_example`, released once through
    the Gaussian mechanism at (epsilon, delta); the count N is public (it sets the sample
    rate); clamping to a valid mean and std afterwards is post-processing."""
    n, channels = len(x), x.shape[1]
    z = gaussian_noise_multiplier(epsilon=epsilon, delta=delta)
    sigma = z * sensitivity(channels)
    sums = per_example(x).sum(dim=0)
    noisy = sums + sigma * torch.randn(sums.shape, generator=generator, dtype=torch.float64)
    mean = (noisy[:channels] / n).clamp(0.0, 1.0)
    variance = noisy[channels:] / n - mean * mean
    std = variance.clamp(STD_FLOOR**2, 0.25).sqrt()  # [0, 1] inputs: std at most 0.5
    entry = Entry(name="normalization", mechanism="gaussian", epsilon=epsilon, delta=delta,
                  detail={"source": "data.normalization (DP estimate)", "examples": n,
                          "sensitivity": sensitivity(channels), "noise_multiplier": z,
                          "sigma": sigma, "mean": mean.tolist(), "std": std.tolist()})
    return (tuple(mean.tolist()), tuple(std.tolist())), entry


def refusal(config: DataConfig) -> str | None:
    """Why a DP trial on ``config`` cannot be normalized without leaking, else None (checked
    before any run folder exists)."""
    if config.mean is not None or config.normalization is not None or config.name in PUBLIC_DEFAULTS:
        return None
    return (f"data.mean/data.std: a dp trial may not normalize with the exact statistics of "
            f"its private training data, and {config.name!r} has no public default; give "
            "public data.mean and data.std (one value per channel), or data.normalization: "
            "{epsilon: ...} for a DP estimate")


def cost(config: DataConfig, *, dataset_size: int) -> tuple[float, float]:
    """(epsilon, delta) a DP trial's normalization will spend, known before the data is read
    (for a cap on the ledger's total): the DP estimate's share, else nothing."""
    if config.mean is not None or config.normalization is None:
        return 0.0, 0.0
    return config.normalization.epsilon, _delta(config, dataset_size)


def _delta(config: DataConfig, dataset_size: int) -> float:
    assert config.normalization is not None
    # a tenth of the dp regime's default total (0.1 / N): DP-SGD keeps the rest of it
    return config.normalization.delta or 0.01 / max(dataset_size, 1)


def _entry(bundle: DataBundle) -> Entry | None:
    return next((e for e in bundle.ledger if e.name == "normalization"), None)


def public_facts(bundle: DataBundle) -> tuple[Entry, ...]:
    """What every DP trial releases about its data exactly, named public: the number of
    training examples (it sets the sample rate and the default delta; Opacus' accountants
    take it as known) and the number of classes (the largest label in any split, plus one:
    the label set is taken as known, as in DP-SGD's analyses)."""
    return (Entry(name="dataset_size", mechanism="public", epsilon=0.0,
                  detail={"examples": len(bundle.train[1]),
                          "released_as": "sample_rate, delta (default 0.1 / N)"}),
            Entry(name="classes", mechanism="public", epsilon=0.0,
                  detail={"num_classes": bundle.num_classes,
                          "released_as": "num_classes in model.pt and checkpoints"}))


def for_trial(config: DataConfig, bundle: DataBundle, *, private: bool,
              seed: int) -> DataBundle:
    """``bundle`` with the normalization a trial may release: unchanged for a non-DP trial;
    for a DP trial the choice in the module doc, its ledger entry replacing the exact
    statistics', and the facts :func:`public_facts` names. Idempotent."""
    if not private:
        return bundle
    current = _entry(bundle)
    mean, std = bundle.mean, bundle.std
    if current is None or current.mechanism == "none":
        (mean, std), current = _private_stats(config, bundle, seed)
    names = {"normalization"} | {e.name for e in public_facts(bundle)}
    ledger = (current, *public_facts(bundle),
              *(e for e in bundle.ledger if e.name not in names))
    if ledger == bundle.ledger:
        return bundle
    return dataclasses.replace(bundle, mean=mean, std=std, ledger=ledger)


def _private_stats(config: DataConfig, bundle: DataBundle, seed: int) -> tuple[Stats, Entry]:
    problem = refusal(config)
    if problem is not None:
        raise DataError(problem)
    if config.normalization is None:
        chosen = public_default(config.name, bundle.input_shape[0])
        assert chosen is not None  # refusal() said there is one
        return chosen
    if bundle.streamed:
        raise DataError("data.normalization: a DP estimate needs the training data in "
                        "memory; set data.stream: false")
    x = bundle.train[0]
    delta = _delta(config, len(x))
    generator = torch.Generator().manual_seed(seed + _NOISE_SEED_OFFSET)
    return dp_estimate(x, epsilon=config.normalization.epsilon, delta=delta, generator=generator)
