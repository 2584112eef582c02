"""robustlr.models: shapes, the Normalize/head contract, Opacus compatibility, checkpoints."""

from __future__ import annotations

import pytest
import torch
from opacus import PrivacyEngine
from opacus.grad_sample import GradSampleModule
from opacus.validators import ModuleValidator
from torch import nn

from robustlr.models import MODELS, Normalize, build, load, read_metadata, save
from robustlr.spec import SpecError

CASES = [  # spec, input_shape
    ("mlp", (1, 8, 8)),
    ("mlp(hidden=[32], norm=group)", (1, 40)),
    ("cnn", (1, 8, 8)),
    ("cnn(width=8, norm=group)", (3, 32, 32)),
    ("cnn(width=4, norm=none)", (1, 28, 28)),
    ("cnn1d", (1, 40)),
    ("cnn1d(norm=batch)", (1, 40)),
    ("resnet18(norm=group)", (3, 32, 32)),
    ("resnet18", (1, 8, 8)),
    ("preact_resnet18(norm=group)", (3, 16, 16)),
    ("wrn(depth=10, width=1)", (3, 16, 16)),
    ("wrn(depth=16, width=2, dropout=0.3, norm=group)", (1, 8, 8)),
]


def _build(spec, shape, num_classes=10, mean=None, std=None):
    torch.manual_seed(0)
    channels = shape[0]
    return build(spec, input_shape=shape, num_classes=num_classes,
                 mean=mean or [0.5] * channels, std=std or [0.25] * channels)


@pytest.mark.parametrize("spec, shape", CASES)
def test_forward_shape_and_layout(spec, shape):
    model = _build(spec, shape, num_classes=7).eval()
    x = torch.rand(3, *shape)
    assert model(x).shape == (3, 7)
    modules = [m for m in model.modules() if not list(m.children())]
    assert isinstance(modules[0], Normalize)
    assert isinstance(modules[-1], nn.Linear) and modules[-1] is model.head
    captured = []
    model.head.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
    model(x)
    assert captured[0].shape == (3, model.head.in_features)  # penultimate features


def test_all_registered_models_are_covered():
    assert {spec.split("(")[0] for spec, _ in CASES} == set(MODELS.names())


def test_cnn1d_is_the_small_convbase():
    model = _build("cnn1d", (1, 40))
    assert 5000 < sum(p.numel() for p in model.parameters()) < 5500


OPACUS_READY = [(spec, shape) for spec, shape in CASES
                if "norm=group" in spec or spec in ("mlp", "cnn1d")]


@pytest.mark.parametrize("spec, shape", OPACUS_READY)
def test_group_and_norm_free_variants_pass_opacus_validation(spec, shape):
    assert ModuleValidator.validate(_build(spec, shape), strict=False) == []


def test_batch_norm_variants_fail_opacus_validation():
    assert ModuleValidator.validate(_build("cnn", (1, 8, 8)), strict=False)


@pytest.mark.filterwarnings("ignore:Secure RNG turned off")
@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_resnet18_group_has_no_inplace_ops_and_trains_under_opacus():
    model = _build("resnet18(norm=group)", (3, 32, 32), num_classes=4)
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = torch.utils.data.TensorDataset(torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    private, optimizer, loader = PrivacyEngine().make_private(
        module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=0.0,
        max_grad_norm=1.0, grad_sample_mode="hooks", poisson_sampling=False)
    before = private._module.head.weight.detach().clone()
    x, y = next(iter(loader))
    nn.functional.cross_entropy(private(x), y).backward()
    assert private._module.features.conv1.weight.grad_sample.shape == (2, 64, 3, 3, 3)
    optimizer.step()
    assert not torch.equal(before, private._module.head.weight)


@pytest.mark.parametrize("spec, params", [("preact_resnet18", 11_172_170),
                                           ("preact_resnet18(width=64)", 11_172_170),
                                           ("preact_resnet18(width=16)", 701_018),
                                           ("wrn(depth=28, width=10)", 36_479_194),
                                           ("wrn(depth=34, width=10)", 46_160_474)])
def test_literature_models_have_the_published_sizes(spec, params):
    # PreAct ResNet-18 11.17M (Rice et al.'s code), WRN-28-10 36.5M (Zagoruyko & Komodakis,
    # Table 1), WRN-34-10 46.2M (Madry et al./TRADES); CIFAR-10 heads. PreAct width 16: groups
    # of 16-128 channels instead of 64-512 (smoke runs of the recipe)
    model = _build(spec, (3, 32, 32), num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == params


@pytest.mark.filterwarnings("ignore:Secure RNG turned off")
@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
@pytest.mark.parametrize("spec", ["preact_resnet18(norm=group)", "wrn(depth=10, width=1, norm=group)"])
def test_literature_models_train_under_opacus_hooks(spec):
    model = _build(spec, (3, 8, 8), num_classes=3)
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    assert ModuleValidator.validate(model, strict=False) == []
    data = torch.utils.data.TensorDataset(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]))
    private, optimizer, loader = PrivacyEngine().make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=torch.utils.data.DataLoader(data, batch_size=2), noise_multiplier=0.0,
        max_grad_norm=1.0, grad_sample_mode="hooks", poisson_sampling=False)
    x, y = next(iter(loader))
    nn.functional.cross_entropy(private(x), y).backward()
    assert private._module.head.weight.grad_sample.shape[0] == 2
    assert all(p.grad_sample is not None for p in private.parameters() if p.requires_grad)


def test_normalize_is_applied():
    x = torch.rand(4, 1, 8, 8)
    plain = _build("mlp", (1, 8, 8), mean=[0.0], std=[1.0]).eval()
    shifted = _build("mlp", (1, 8, 8), mean=[0.3], std=[0.5]).eval()
    assert not torch.allclose(plain(x), shifted(x))
    assert torch.allclose(shifted(x), plain((x - 0.3) / 0.5), atol=1e-6)
    assert torch.allclose(Normalize([0.5, 0.0], [0.5, 2.0])(torch.ones(1, 2, 3)),
                          torch.tensor([[[1.0] * 3, [0.5] * 3]]))


@pytest.mark.parametrize("spec, shape", [("cnn(width=4)", (1, 8, 8)), ("cnn1d(norm=group)", (1, 40)),
                                         ("mlp(hidden=[16, 8], norm=batch)", (2, 5))])
def test_save_load_round_trip(tmp_path, spec, shape):
    mean, std = [0.1 * (c + 1) for c in range(shape[0])], [0.3] * shape[0]
    model = _build(spec, shape, num_classes=5, mean=mean, std=std)
    model.train()
    model(torch.rand(8, *shape))  # moves BatchNorm running statistics off their defaults
    model.eval()
    path = tmp_path / "model.pt"
    save(model, path, spec=spec, input_shape=shape, num_classes=5, mean=mean, std=std,
         extra={"epoch": 3, "clean_acc": 0.5})
    torch.load(path, weights_only=True)  # plain tensors and strings only
    loaded = load(path)
    assert not loaded.training
    x = torch.rand(6, *shape)
    assert torch.equal(loaded(x), model(x))
    meta = read_metadata(path)
    assert meta["extra"] == {"epoch": 3, "clean_acc": 0.5} and meta["input_shape"] == list(shape)


def test_save_unwraps_opacus_and_rejects_non_json_extra(tmp_path):
    model = _build("cnn1d(norm=group)", (1, 40))
    arguments = dict(spec="cnn1d(norm=group)", input_shape=(1, 40), num_classes=10,
                     mean=[0.5], std=[0.25])
    save(GradSampleModule(model), tmp_path / "dp.pt", **arguments)
    x = torch.rand(2, 1, 40)
    assert torch.equal(load(tmp_path / "dp.pt")(x), model.eval()(x))
    with pytest.raises(TypeError, match="extra"):
        save(model, tmp_path / "bad.pt", extra={"when": object()}, **arguments)


@pytest.mark.parametrize("spec, shape, words", [
    ("cnn(depth=3)", (1, 8, 8), ["'depth'", "allowed: width, hidden, norm"]),
    ("cnn(norm=layer)", (1, 8, 8), ["'norm'", "batch, group, none"]),
    ({"name": "cnn", "width": 0}, (1, 8, 8), ["'width'"]),
    ("mlp(hidden=[0])", (1, 8, 8), ["'hidden'"]),
    ("cnn1d(width=2.5)", (1, 40), ["'width'"]),
    ("resnet18(input_shape=[1, 2])", (1, 8, 8), ["'input_shape'"]),
    ("cnn", (1, 40), ["(C, H, W)", "(1, 40)"]),
    ("cnn1d", (1, 8, 8), ["(C, L)"]),
    ("wrn(depth=30)", (3, 8, 8), ["'depth'", "6n + 4"]),
    ("preact_resnet18", (1, 40), ["(C, H, W)"]),
    ("vit", (1, 8, 8), ["'vit' is unknown", "cnn1d"]),
])
def test_bad_specs_name_the_problem(spec, shape, words):
    with pytest.raises(SpecError) as error:
        _build(spec, shape)
    for word in words:
        assert word in str(error.value)


def test_mean_std_must_match_channels():
    with pytest.raises(ValueError, match="one per input channel"):
        build("cnn", input_shape=(3, 8, 8), num_classes=10, mean=[0.5], std=[0.5])



def test_every_module_of_the_models_package_is_imported_with_it():
    """Adding a model is one file: importing robustlr.models imports each of its modules, so a
    module's @MODELS.register is all that makes its name buildable (no list of models)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import robustlr.models as package

    files = sorted(p.stem for p in Path(package.__file__).parent.glob("*.py") if p.stem != "__init__")
    # a fresh interpreter: this one may have imported the modules for other reasons
    loaded = subprocess.run([sys.executable, "-c", "import json, sys, robustlr.models; print(json.dumps("
                             "sorted(m.rpartition('.')[2] for m in sys.modules if m.startswith('robustlr.models.'))))"],
                            capture_output=True, text=True, check=True).stdout
    assert json.loads(loaded) == files
