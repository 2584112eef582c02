"""The tables of grad-sample modes and accountants say what the code does: each row's fields
are checked against a real step (or a real Opacus accountant), and the modules' paths from
before the split into accounting/, grad_sample/ and audit/ still import."""

from __future__ import annotations

import importlib

import pytest
import torch
from opacus.accountants import RDPAccountant
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import robustlr.privacy as privacy
from robustlr.privacy import engine
from robustlr.privacy.accounting import accountants
from robustlr.privacy.grad_sample import modes


class _Shared(nn.Module):
    """A weight shared by two layers."""

    def __init__(self):
        super().__init__()
        self.b, self.c = nn.Linear(4, 3), nn.Linear(4, 3)
        self.c.weight = self.b.weight

    def forward(self, x):
        return self.b(x) + self.c(x * x)


def _step(model: nn.Module, mode: str) -> engine.PrivateTraining:
    torch.manual_seed(0)
    x, y = torch.rand(8, 4), torch.randint(0, 3, (8,))
    private = engine.make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=DataLoader(TensorDataset(x, y), batch_size=8), noise_multiplier=0.0,
        max_grad_norm=0.1, poisson_sampling=False, grad_sample_mode=mode)
    private.criterion(private.module(x), y).backward()
    return private


@pytest.mark.parametrize("name", list(modes.MODES))
def test_a_modes_row_says_whether_it_returns_a_criterion(name):
    private = _step(nn.Linear(4, 3), name)
    wrapped = isinstance(private.criterion, DPLossFastGradientClipping)
    assert wrapped == modes.MODES[name].returns_criterion == modes.MODES[name].fast_clipping


@pytest.mark.parametrize("name", [n for n, row in modes.MODES.items() if row.fast_clipping])
def test_a_modes_row_says_whether_it_clips_a_shared_weight(name):
    row = modes.MODES[name]
    assert (engine.check_grad_sample_mode(_Shared(), name) is None) == row.supports_tying
    if row.supports_tying:
        norms = _step(_Shared(), name).module.per_sample_gradient_norms
        assert norms.shape == (8,)
    else:
        with pytest.raises(NotImplementedError, match="Parameter tying is not supported"):
            _step(_Shared(), name)


def test_a_modes_layers_decide_the_support_check():
    bilinear = nn.Sequential(nn.Bilinear(4, 4, 2))
    for name, row in modes.MODES.items():
        assert (engine.check_grad_sample_mode(bilinear, name) is None) == (row.layers is None)


def test_a_row_that_breaks_opacus_naming_rule_is_refused():
    with pytest.raises(ValueError, match="'ghost' in the name"):
        modes.GradSampleMode(name="fast", fast_clipping=True, supports_tying=False)
    with pytest.raises(ValueError, match="'ghost' in the name"):
        modes.GradSampleMode(name="ghostly", fast_clipping=False, supports_tying=True)
    with pytest.raises(ValueError, match="grad_sample_mode must be one of"):
        modes.mode("magic")


def test_the_engine_and_the_settings_read_the_table():
    assert engine.GRAD_SAMPLE_MODES == tuple(modes.MODES)
    assert engine.DEFAULT_MODE in modes.MODES
    from robustlr.regimes.dp_settings import AUGMULT_MODES
    assert AUGMULT_MODES == ("hooks", "functorch")


def test_opacus_accountants_come_from_its_public_factory_and_agree_with_its_class():
    hist = [(1.1, 0.01, 500), (0.9, 0.01, 200)]
    reference = RDPAccountant()
    reference.history = list(hist)
    assert accountants.TABLE["rdp"].epsilon(hist, delta=1e-5) == reference.get_epsilon(delta=1e-5)
    assert privacy.ACCOUNTANTS == ("rdp", "gdp", "prv")
    assert accountants.BOUNDS == ("prv", "rdp")  # gdp is an estimate: never stops or calibrates


@pytest.mark.parametrize("old, new", [
    ("calibrate", "accounting.calibrate"), ("composition", "accounting.composition"),
    ("full_batch", "accounting.full_batch"), ("guard", "accounting.guard"),
    ("audit_one_run", "audit.one_run"), ("mia_stats", "audit.mia_stats"),
    ("bookkeeping", "grad_sample.bookkeeping"), ("clipped_sums", "grad_sample.clipped_sums"),
    ("ghost_norms", "grad_sample.ghost_norms"), ("group_norm", "grad_sample.group_norm"),
    ("in_place_noise", "grad_sample.in_place_noise"), ("modules", "grad_sample.modules"),
    ("pixel_gram", "grad_sample.pixel_gram"), ("support", "grad_sample.support"),
    ("grad_modes", "grad_sample.opacus_engine")])
def test_the_modules_paths_from_before_the_split_still_import(old, new):
    assert importlib.import_module(f"robustlr.privacy.{old}") is \
        importlib.import_module(f"robustlr.privacy.{new}")
