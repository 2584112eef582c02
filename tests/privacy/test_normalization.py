"""Normalization constants under DP: public constants for every regime, documented public
defaults, a DP estimate through the Gaussian mechanism (exactly calibrated), a one-line
refusal otherwise; non-DP trials keep the training split's exact statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import tiny, write_config
from pydantic import ValidationError

from robustlr import data
from robustlr.cli import main
from robustlr.data import DataConfig, normalization
from robustlr.data.sources import DataError
from robustlr.privacy import epsilon
from robustlr.privacy.gaussian import gaussian_delta, gaussian_noise_multiplier

SYNTHETIC = {"name": "synthetic", "synthetic": {"num_examples": 200, "shape": [2, 4, 4]}}


@pytest.mark.parametrize(("fields", "names"), [
    ({"mean": [0.5]}, "data.mean and data.std"),
    ({"mean": [0.5, 0.5], "std": [0.2, 0.2]}, "data.mean needs one value per input channel (1)"),
    ({"mean": [0.5], "std": [0.0]}, "data.std must be > 0"),
    ({"mean": [0.5], "std": [0.2], "normalization": {"epsilon": 1.0}}, "data.normalization"),
    ({"normalization": {"epsilon": 0}}, "epsilon"),
    ({"normalization": {"epsilon": 1.0, "delta": 1.5}}, "delta"),
])
def test_bad_constants_are_one_line_errors_naming_the_field(fields, names):
    with pytest.raises(ValidationError, match=names.replace("(", r"\(").replace(")", r"\)")):
        DataConfig(name="digits", **fields)


def test_constants_must_match_the_channels_of_the_data():
    with pytest.raises(ValidationError, match=r"data.mean needs one value per input channel \(3\)"):
        DataConfig(name="cifar10", mean=[0.5], std=[0.5])
    with pytest.raises(ValidationError, match=r"\(2\)"):
        DataConfig(**SYNTHETIC, mean=[0.5], std=[0.5])


def test_user_data_with_the_wrong_number_of_constants_is_refused_when_loaded(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.random.default_rng(0).random((40, 3, 4, 4)), y=np.arange(40) % 2)
    with pytest.raises(DataError, match=r"data.mean/data.std need one value per input channel \(3\)"):
        data.prepare(DataConfig(name="npz", path=str(path), mean=[0.5], std=[0.5]), seed=0)


def test_public_constants_replace_the_statistics_for_every_regime():
    config = DataConfig(**SYNTHETIC, mean=[0.4, 0.6], std=[0.2, 0.3])
    bundle = data.prepare(config, seed=0)
    assert (bundle.mean, bundle.std) == ((0.4, 0.6), (0.2, 0.3))
    (entry,) = bundle.ledger
    assert entry.name == "normalization" and entry.public
    private = normalization.for_trial(config, bundle, private=True, seed=0)
    assert (private.mean, private.std) == (bundle.mean, bundle.std)
    assert normalization.for_trial(config, private, private=True, seed=0) is private  # idempotent


def test_a_non_dp_trial_keeps_the_exact_statistics_of_its_training_split():
    config = DataConfig(**SYNTHETIC)
    bundle = data.prepare(config, seed=0)
    x = bundle.train[0].double()
    assert bundle.mean == pytest.approx(tuple(x.mean(dim=(0, 2, 3)).tolist()), abs=1e-12)
    assert bundle.std == pytest.approx(tuple(x.std(dim=(0, 2, 3), correction=0).tolist()), abs=1e-12)
    assert bundle.ledger[0].mechanism == "none" and bundle.ledger[0].epsilon == math.inf
    assert normalization.for_trial(config, bundle, private=False, seed=0) is bundle


def test_a_dp_trial_takes_the_public_default_and_refuses_user_data_without_one(tmp_path):
    bundle = data.prepare(DataConfig(**SYNTHETIC), seed=0)
    private = normalization.for_trial(DataConfig(**SYNTHETIC), bundle, private=True, seed=0)
    assert (private.mean, private.std) == ((0.5, 0.5), (0.5, 0.5))
    assert [(e.name, e.mechanism) for e in private.ledger] == [
        ("normalization", "public"), ("dataset_size", "public"), ("classes", "public")]
    assert private.ledger[1].detail["examples"] == len(bundle.train[1])
    npz = DataConfig(name="npz", path=str(tmp_path / "d.npz"))
    with pytest.raises(DataError, match="data.mean/data.std: a dp trial"):
        normalization.for_trial(npz, bundle, private=True, seed=0)


def test_the_cli_refuses_a_dp_run_on_user_data_without_constants_before_any_folder(tmp_path):
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((120, 1, 4, 4)).astype(np.float32), y=np.arange(120) % 2)
    raw = tiny(regimes=["dp(noise_multiplier=1.0)"], schedules=["constant"], train={"epochs": 1})
    raw["data"] = {"name": "npz", "path": str(path)}
    config = write_config(tmp_path / "c.yaml", raw)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", str(config), "--out", str(out), "--no-progress"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "data.mean/data.std" in lines[0] and "data.normalization" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize(("eps", "delta"), [(0.1, 1e-5), (1.0, 1e-5), (3.0, 1e-6), (8.0, 1e-3)])
def test_the_gaussian_mechanism_is_calibrated_exactly(eps, delta):
    z = gaussian_noise_multiplier(epsilon=eps, delta=delta)
    assert gaussian_delta(epsilon=eps, noise_multiplier=z) <= delta
    assert gaussian_delta(epsilon=eps, noise_multiplier=z * 0.999) > delta  # the least noise
    if eps < 1:  # the classical calibration (Dwork & Roth, Thm A.1) adds more
        assert z <= math.sqrt(2 * math.log(1.25 / delta)) / eps
    # Opacus' PRV accountant on one Gaussian step agrees within its error margin (0.01); it
    # fails at sample rate 1 (log(1 - q)), so q is one part in a million below
    opacus = epsilon(sample_rate=1 - 1e-6, noise_multiplier=z, steps=1, delta=delta,
                     accountant="prv")
    assert eps <= opacus <= eps + 0.015


def test_a_dp_estimate_adds_noise_of_the_calibrated_scale_without_bias():
    """Over 400 draws of the noise, the released mean's spread is sigma / N (the mechanism's
    scale for the sensitivity sqrt(2C)) and its average the exact mean."""
    x = torch.rand(500, 2, 3, 3, generator=torch.Generator().manual_seed(0)) * 0.6 + 0.2
    means = []
    for seed in range(400):
        (mean, std), entry = normalization.dp_estimate(
            x, epsilon=2.0, delta=1e-5, generator=torch.Generator().manual_seed(seed))
        means.append(mean)
    assert entry.mechanism == "gaussian" and entry.epsilon == 2.0 and entry.delta == 1e-5
    assert entry.detail["sensitivity"] == pytest.approx(2.0)  # sqrt(2 * 2 channels)
    sigma = gaussian_noise_multiplier(epsilon=2.0, delta=1e-5) * 2.0
    spread = np.std(np.array(means), axis=0)
    assert spread == pytest.approx([sigma / 500] * 2, rel=0.15)
    assert np.mean(np.array(means), axis=0) == pytest.approx(
        x.double().mean(dim=(0, 2, 3)).tolist(), abs=3 * sigma / 500 / math.sqrt(400))


def test_one_example_moves_the_released_sums_by_at_most_the_sensitivity():
    x = torch.rand(50, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    neighbour = x.clone()
    neighbour[0] = 1.0 - neighbour[0].round()  # the farthest corner of [0, 1]
    moved = normalization.per_example(x).sum(0) - normalization.per_example(neighbour).sum(0)
    assert 0 < moved.norm() <= normalization.sensitivity(3)
    outside = x.clone()
    outside[0] = 50.0  # inputs outside [0, 1] are clamped: the bound holds for any data
    moved = normalization.per_example(x).sum(0) - normalization.per_example(outside).sum(0)
    assert moved.norm() <= normalization.sensitivity(3)


def test_a_dp_checkpoint_fingerprints_the_test_split_alone_and_attack_accepts_it(tmp_path):
    from robustlr.cli.attack import _recorded_split
    from robustlr.data.provenance import data_record, split_hash
    from robustlr.errors import InputError

    rng = np.random.default_rng(0)
    arrays = {"x": rng.random((60, 1, 4, 4)).astype(np.float32), "y": np.arange(60) % 3,
              "x_test": rng.random((20, 1, 4, 4)).astype(np.float32), "y_test": np.arange(20) % 3}
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    config = DataConfig(name="npz", path=str(path), mean=[0.5], std=[0.3])
    bundle = data.prepare(config, seed=0)
    record = data_record(config, bundle, seed=0, private=True)
    assert record["split_scope"] == "test" and record["split_hash"] == split_hash(bundle, scope="test")
    assert record["split_hash"] != split_hash(bundle)  # the validation labels are left out
    assert "normalization" not in record["config"]  # unset optional fields: records as before
    x, _ = _recorded_split({"extra": {"data": record}}, str(path), "test", ".", None)
    assert torch.equal(x, bundle.test[0])
    arrays["x_test"][0] = 1.0 - arrays["x_test"][0]  # another test split: refused
    np.savez(path, **arrays)
    with pytest.raises(InputError, match="not the one the model was trained on"):
        _recorded_split({"extra": {"data": record}}, str(path), "test", ".", None)


def test_the_cost_of_the_normalization_is_known_before_the_data_is_read():
    assert normalization.cost(DataConfig(name="digits"), dataset_size=1000) == (0.0, 0.0)
    estimate = DataConfig(name="digits", normalization={"epsilon": 0.3})
    assert normalization.cost(estimate, dataset_size=1000) == (0.3, 1e-5)
    bundle = data.prepare(estimate, seed=0)
    entry = normalization.for_trial(estimate, bundle, private=True, seed=0).ledger[0]
    assert (entry.epsilon, entry.delta) == normalization.cost(estimate, dataset_size=len(bundle.train[1]))
