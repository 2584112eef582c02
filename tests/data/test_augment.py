"""data.augment: seeded on-device batch operations that stay in [0, 1] and the input shape,
agree with a per-example reference, reach the adversarial attack, and never touch evaluation;
a CIFAR-shaped synthetic run with crop + flip (bf16, channels_last) goes through `robustlr run`."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from helpers import tiny, write_config
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F  # noqa: N812

from robustlr import data, experiment
from robustlr.cli import main
from robustlr.data.augment import AUGMENTS, AugmentedBatches, build
from robustlr.spec import SpecError
from robustlr.training.setup import TensorBatches, backward, prepare

RECIPE = ["random_crop(padding=4)", "hflip", "cutout(size=8)"]


def _apply(specs, x, seed):
    return build(specs, input_shape=x.shape[1:])(x, torch.Generator().manual_seed(seed))


def test_same_seed_same_batches_other_seed_other_batches():
    x = torch.rand(16, 3, 32, 32)
    assert torch.equal(_apply(RECIPE, x, 3), _apply(RECIPE, x, 3))
    assert not torch.equal(_apply(RECIPE, x, 3), _apply(RECIPE, x, 4))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 5), channels=st.sampled_from([1, 3]), height=st.integers(9, 20),
       width=st.integers(9, 20), seed=st.integers(0, 1000))
def test_every_operation_keeps_range_shape_and_dtype(n, channels, height, width, seed):
    x = torch.rand(n, channels, height, width)
    for spec in RECIPE + ["hflip(p=1.0)", "cutout(size=9)", "random_crop(padding=8)"]:
        out = _apply([spec], x, seed)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert n == 0 or (out.min() >= 0.0 and out.max() <= 1.0)


def test_random_crop_is_a_window_of_the_zero_padded_image():
    x, p = torch.rand(6, 2, 10, 12), 3
    out = _apply([f"random_crop(padding={p})"], x, 7)
    generator = torch.Generator().manual_seed(7)  # the same draws, in the same order
    top = torch.randint(0, 2 * p + 1, (6,), generator=generator)
    left = torch.randint(0, 2 * p + 1, (6,), generator=generator)
    padded = F.pad(x, (p, p, p, p))
    for i in range(6):
        assert torch.equal(out[i], padded[i, :, top[i]:top[i] + 10, left[i]:left[i] + 12])


def test_flip_and_cutout_against_their_definitions():
    x = torch.rand(4, 3, 8, 8)
    assert torch.equal(_apply(["hflip(p=1.0)"], x, 0), x.flip(-1))
    assert torch.equal(_apply(["hflip(p=0.0)"], x, 0), x)
    holes = (_apply(["cutout(size=4)"], x + 1.0, 0) == 0).all(1)  # inputs > 0: zeros are the hole
    for hole in holes:
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4
        assert hole.sum() == len(rows) * len(cols)  # one axis-aligned rectangle (clipped square)


def test_streamed_item_transforms_keep_range_and_shape():
    augmentation = build(RECIPE, input_shape=(3, 16, 16))
    torch.manual_seed(0)
    items = augmentation.items()
    for _ in range(5):
        out = items(torch.rand(3, 16, 16))
        assert out.shape == (3, 16, 16) and 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.parametrize("spec, shape, words", [
    ("random_crop", (1, 40), ["random_crop needs image inputs", "(1, 40)"]),
    ("cutout(size=9)", (1, 8, 8), ["larger than the image"]),
    ("random_crop(padding=8)", (1, 8, 8), ["below the image size"]),
])
def test_an_augmentation_that_does_not_fit_the_inputs_names_its_index(spec, shape, words):
    with pytest.raises(ValueError) as error:
        build(["hflip(p=0.0)", spec] if len(shape) == 3 else [spec], input_shape=shape)
    assert f"data.augment[{1 if len(shape) == 3 else 0}]" in str(error.value)
    for word in words:
        assert word in str(error.value)


def test_unknown_augmentation_and_parameter_are_spec_errors():
    with pytest.raises(SpecError, match="augment 'mixup' is unknown; allowed: random_crop"):
        AUGMENTS.build("mixup")
    with pytest.raises(SpecError, match="'pad'"):
        AUGMENTS.build("random_crop(pad=4)")


def _config(**data_fields):
    return experiment.from_mapping(tiny(
        data={"synthetic": {"num_examples": 120, "num_classes": 3, "shape": [3, 12, 12]},
              **data_fields},
        model={"name": "cnn", "width": 4, "hidden": 8}, regimes=["pgd_at(eps=0.03, steps=2)"]))


def test_training_batches_are_augmented_and_the_attack_sees_them():
    config = _config(augment=["random_crop(padding=2)", "hflip"])
    bundle = data.prepare(config.data, seed=0)
    prepared = prepare(config, bundle, regime_spec=config.regimes[0], seed=5, lr=0.1,
                       total_steps=lambda batches: batches)
    setup, regime = prepared.setup, prepared.regime
    assert isinstance(setup.loader, AugmentedBatches)
    # the same seed through a plain loader plus the same augmentation gives the same batches
    generator = torch.Generator().manual_seed(5)
    reference = AugmentedBatches(TensorBatches(*bundle.train, batch_size=32, generator=generator,
                                               device=torch.device("cpu")),
                                 build(config.data.augment, input_shape=(3, 12, 12)), generator)
    expected = [x for x, _ in reference]
    attacked = []
    perturb = regime.perturb
    regime.perturb = lambda model, x, y, eps: attacked.append(x) or perturb(model, x, y, eps)
    for x, y in setup.loader:
        backward(setup, regime, x, y, progress=0.0)
    assert len(attacked) == len(expected) == 3  # 72 training examples, batches of 32
    assert all(torch.equal(a, b) for a, b in zip(attacked, expected))
    unaugmented = bundle.train[0][torch.randperm(72, generator=torch.Generator().manual_seed(5))[:32]]
    assert not torch.equal(attacked[0], unaugmented)


def test_evaluation_splits_are_never_augmented():
    plain = data.prepare(_config().data, seed=0)
    augmented = data.prepare(_config(augment=RECIPE[:2]).data, seed=0)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(plain, split)[0], getattr(augmented, split)[0])


def test_cifar_shaped_run_with_crop_and_flip_passes_on_cpu(tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny(
        name="cifar-shaped",
        data={"synthetic": {"num_examples": 200, "num_classes": 10, "shape": [3, 32, 32]},
              "augment": ["random_crop(padding=4)", "hflip"]},
        model={"name": "cnn", "width": 8, "hidden": 16},
        train={"epochs": 2, "batch_size": 50, "precision": "bf16", "channels_last": True},
        schedules=["cosine"], regimes=["standard", "pgd_at(eps=8/255, step_size=2/255, steps=2)"]))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", str(config), "--out", str(out), "--no-progress",
                                       "--workers", "1"])
    assert result.exit_code == 0, result.output
    summaries = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summaries] == ["ok", "ok"]
