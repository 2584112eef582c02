"""privacy.in_place_noise: Opacus' fast-clipping step without copies, same noise (privacy-critical).

The optimizer must give bit for bit what Opacus' ``DPOptimizerFastGradientClipping`` gives from
the same clipped sums and generator: one real step, physical batches accumulated under
BatchMemoryManager's skip signal, secure mode, zero noise; and refuse a gradient used twice.
"""

from __future__ import annotations

import pytest
import torch
from opacus.optimizers import DPOptimizerFastGradientClipping
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robustlr.privacy import engine
from robustlr.privacy.grad_sample.in_place_noise import InPlaceNoiseOptimizer


def _optimizer(cls, params, *, sigma=1.3, secure_mode=False):
    return cls(optimizer=torch.optim.SGD(params, lr=0.1), noise_multiplier=sigma,
               max_grad_norm=0.7, expected_batch_size=4, secure_mode=secure_mode,
               generator=torch.Generator().manual_seed(11))


def _params():
    torch.manual_seed(0)
    return [nn.Parameter(torch.randn(3, 5)), nn.Parameter(torch.randn(7)),
            nn.Parameter(torch.randn(2, 3, 3, 3))]


def _run(cls, batches, **kwargs):
    """Steps of ``cls`` over ``batches`` (lists of clipped sums, one per parameter); a batch
    tagged "skip" only accumulates, as under BatchMemoryManager. Returns the parameters."""
    params = _params()
    optimizer = _optimizer(cls, params, **kwargs)
    for skip, sums in batches:
        optimizer.zero_grad()
        for p, s in zip(params, sums):
            p.grad = s.clone()  # what the clipping module leaves in p.grad
        optimizer.signal_skip_step(skip)
        optimizer.step()
    return [p.detach() for p in params]


def _sums(seed):
    torch.manual_seed(seed)
    return [torch.randn(p.shape) for p in _params()]


@pytest.mark.parametrize("kwargs", [{}, {"sigma": 0.0}, {"secure_mode": True}],
                         ids=["noise", "no-noise", "secure"])
def test_steps_equal_opacus_fast_clipping_optimizer_bit_for_bit(kwargs):
    batches = [(False, _sums(1)), (True, _sums(2)), (True, _sums(3)), (False, _sums(4)),
               (False, _sums(5))]  # real, two accumulated physical batches + real, real
    mine, reference = (_run(cls, batches, **kwargs)
                       for cls in (InPlaceNoiseOptimizer, DPOptimizerFastGradientClipping))
    for a, b in zip(mine, reference):
        assert torch.equal(a, b)


def test_the_noised_sum_is_the_only_copy_of_the_gradients():
    params = _params()
    optimizer = _optimizer(InPlaceNoiseOptimizer, params)
    sums = _sums(1)
    for p, s in zip(params, sums):
        p.grad = s
    optimizer.pre_step()
    for p, s in zip(params, sums):  # noised and scaled where the clipping module put it
        assert p.grad.data_ptr() == p.summed_grad.data_ptr() == s.data_ptr()


def test_a_gradient_used_twice_is_refused_as_opacus_does():
    params = _params()
    optimizer = _optimizer(InPlaceNoiseOptimizer, params)
    for _ in range(2):  # no zero_grad() in between
        for p, s in zip(params, _sums(1)):
            p.grad = s
        if _ == 0:
            optimizer.step()
    with pytest.raises(ValueError, match="zero_grad"):
        optimizer.step()


def test_fast_modes_get_the_in_place_optimizer():
    x, y = torch.randn(4, 3), torch.arange(4) % 2
    for mode in ("ghost_bk", "ghost_mixed"):
        model = nn.Linear(3, 2)
        private = engine.make_private(
            module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            noise_multiplier=1.0, max_grad_norm=1.0, poisson_sampling=False,
            data_loader=DataLoader(TensorDataset(x, y), batch_size=4), grad_sample_mode=mode)
        assert type(private.optimizer) is InPlaceNoiseOptimizer
