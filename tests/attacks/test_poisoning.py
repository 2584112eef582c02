"""Poisoning attacks: exact bookkeeping, trigger placement, ART equivalence, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import robustlr.attacks as attacks
from robustlr.attacks.poisoning import POISONS, BadNets, Blend, LabelFlip, NoPoison
from robustlr.attacks.poisoning.metrics import backdoor_metrics


def data(n=200, shape=(1, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *shape), generator=g), torch.randint(0, 10, (n,), generator=g)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_import_resolves_to_this_repository():
    assert attacks.__path__[0].endswith("/attacks") and "site-packages" not in attacks.__path__[0]


def test_none_changes_nothing_and_rate_zero_is_rejected():
    x, y = data()
    out = POISONS["none"]().poison(x, y, num_classes=10, generator=gen())
    assert torch.equal(out.x, x) and torch.equal(out.y, y) and len(out.indices) == 0
    assert backdoor_metrics(torch.nn.Linear(1, 1), x, y, NoPoison()) is None
    for name in ("badnets", "blend", "label_flip", "clean_label"):
        with pytest.raises(ValueError, match="^rate"):
            POISONS[name](rate=0.0)


@pytest.mark.parametrize("position,rows,cols", [("bottom_right", slice(5, 8), slice(5, 8)),
                                                ("top_left", slice(0, 3), slice(0, 3)),
                                                ("top_right", slice(0, 3), slice(5, 8))])
def test_badnets_trigger_exactly_where_configured(position, rows, cols):
    x, y = data()
    attack = BadNets(rate=0.1, target=3, position=position)
    out = attack.poison(x, y, num_classes=10, generator=gen())
    changed = (out.x != x).flatten(1).any(1).nonzero().flatten()
    assert set(changed.tolist()) <= set(out.indices.tolist())
    assert len(out.indices) == 20 and torch.equal(out.indices, out.indices.sort().values)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[rows, cols] = True
    checker = torch.tensor([[1., 0, 1], [0, 1, 0], [1, 0, 1]])
    assert torch.equal(out.x[out.indices][:, 0][:, mask].view(-1, 3, 3), checker.expand(20, 3, 3))
    assert torch.equal(out.x[:, :, ~mask], x[:, :, ~mask])      # nothing outside the patch
    clean = torch.ones(len(y), dtype=torch.bool)
    clean[out.indices] = False
    assert torch.equal(out.x[clean], x[clean]) and torch.equal(out.y[clean], y[clean])
    assert (out.y[out.indices] == 3).all() and (y[out.indices] != 3).all()


def test_badnets_on_signals_and_rgb():
    x, _ = data(4, (1, 40))
    t = BadNets(rate=0.1, size=4, position="bottom_left", pattern="white").apply_trigger(x)
    assert (t[..., :4] == 1).all() and torch.equal(t[..., 4:], x[..., 4:])
    rgb, _ = data(4, (3, 8, 8))
    assert (BadNets(rate=0.1, pattern="white").apply_trigger(rgb)[:, :, 5:, 5:] == 1).all()


def test_badnets_matches_art_backdoor_pixel_exact():
    from art.attacks.poisoning import PoisoningAttackBackdoor
    from art.attacks.poisoning.perturbations import add_single_bd

    x, y = data()
    ours = BadNets(rate=0.1, target=2, size=1, pattern="white").poison(x, y, num_classes=10,
                                                                       generator=gen())
    target = np.eye(10)[[2] * len(ours.indices)]
    art_x, art_y = PoisoningAttackBackdoor(lambda a: add_single_bd(a, distance=1)).poison(
        x[ours.indices, 0].numpy(), target)
    assert np.array_equal(ours.x[ours.indices, 0].numpy(), art_x)
    assert np.array_equal(ours.y[ours.indices].numpy(), art_y.argmax(1))
    # the 3x3 checker through ART's attack with our perturbation: same images, same labels
    attack = BadNets(rate=0.1, target=2)
    ours = attack.poison(x, y, num_classes=10, generator=gen())
    art_x, _ = PoisoningAttackBackdoor(lambda a: attack.apply_trigger(torch.from_numpy(a)).numpy()
                                       ).poison(x[ours.indices].numpy(), target)
    assert np.array_equal(ours.x[ours.indices].numpy(), art_x)


def test_blend_mixes_fixed_pattern():
    x, y = data()
    a, b = Blend(rate=0.1, alpha=0.2), Blend(rate=0.1, alpha=0.2)
    out = a.poison(x, y, num_classes=10, generator=gen())
    key = a.pattern((1, 8, 8))
    assert torch.equal(key, b.pattern((1, 8, 8))) and key.min() >= 0 and key.max() <= 1
    assert torch.allclose(out.x[out.indices], 0.8 * x[out.indices] + 0.2 * key)
    assert torch.equal(out.indices, Blend(rate=0.1).poison(x, y, num_classes=10, generator=gen()).indices)


def test_label_flip_exact_count_source_to_target():
    x, y = data(1000)
    out = LabelFlip(rate=0.2, source=1, target=7).poison(x, y, num_classes=10, generator=gen())
    n_source = int((y == 1).sum())
    assert len(out.indices) == round(0.2 * n_source)
    assert (y[out.indices] == 1).all() and (out.y[out.indices] == 7).all()
    changed = (out.y != y).nonzero().flatten()
    assert torch.equal(changed, out.indices) and torch.equal(out.x, x)


def test_label_flip_random_always_changes_class():
    x, y = data(1000)
    out = LabelFlip(rate=0.3).poison(x, y, num_classes=10, generator=gen())
    assert len(out.indices) == 300 and (out.y[out.indices] != y[out.indices]).all()
    assert torch.equal((out.y != y).nonzero().flatten(), out.indices)
    assert out.y.max() < 10 and out.fraction == 0.3


@pytest.mark.parametrize("make,field", [
    (lambda: BadNets(rate=1.5), "rate"), (lambda: BadNets(rate=0.1, size=0), "size"),
    (lambda: BadNets(rate=0.1, position="middle"), "position"),
    (lambda: Blend(rate=0.1, alpha=0.0), "alpha"), (lambda: LabelFlip(rate=-0.1), "rate"),
    (lambda: LabelFlip(rate=0.1, source=1), "target"), (lambda: BadNets(rate=0.1, target=-1), "target")])
def test_bad_parameters_name_the_field(make, field):
    with pytest.raises(ValueError, match=f"^{field} "):
        make()


def test_nonexistent_class_names_the_field():
    x, y = data()
    with pytest.raises(ValueError, match=r"^target must be an integer in \[0, 9\]"):
        BadNets(rate=0.1, target=10).poison(x, y, num_classes=10, generator=gen())
    with pytest.raises(ValueError, match="^source "):
        LabelFlip(rate=0.1, source=12, target=1).poison(x, y, num_classes=10, generator=gen())


def test_backdoor_metrics_on_trained_model(digits_tensors):
    from conftest import small_cnn, train_plain

    x, y, x_test, y_test = digits_tensors
    attack = BadNets(rate=0.05, target=0)
    poisoned = attack.poison(x, y, num_classes=10, generator=gen())
    torch.manual_seed(0)
    model = train_plain(small_cnn(), poisoned.x, poisoned.y, epochs=8)
    model.train()
    metrics = backdoor_metrics(model, x_test, y_test, attack)
    assert model.training  # mode restored
    assert metrics["asr"] >= 0.9 and metrics["asr"] + metrics["ra"] <= 1.0


class _Corner:
    """A trigger: the last pixel set to 1."""

    target = 0

    def apply_trigger(self, x):
        x = x.clone()
        x[..., -1, -1] = 1.0
        return x


class _Reader(torch.nn.Module):
    """Reads the class written in the first pixel (class / 10); on triggered inputs, classes
    1 and 3 flip to the target 0. Its predictions are known exactly."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # gives the metrics a device

    def forward(self, x):
        c = (x[:, 0, 0, 0] * 10).round().long()
        triggered = x[:, 0, -1, -1] == 1.0
        c = torch.where(triggered & ((c == 1) | (c == 3)), torch.zeros_like(c), c)
        return torch.nn.functional.one_hot(c, 10).float()


def test_backdoor_metrics_exact_values_skip_the_target_class():
    y = torch.tensor([0, 1, 2, 3, 4, 5, 0])
    x = torch.zeros(len(y), 1, 3, 3)
    x[:, 0, 0, 0] = y / 10
    model = _Reader().eval()
    # outside the target class: 1, 2, 3, 4, 5 -> triggered predictions 0, 2, 0, 4, 5
    metrics = backdoor_metrics(model, x, y, _Corner(), batch_size=2)
    assert metrics == {"asr": pytest.approx(2 / 5), "ra": pytest.approx(3 / 5)}
    assert not model.training  # an eval model stays in eval
    with pytest.raises(ValueError, match=r"^x_test has no example outside the target class; "
                                         r"ASR is undefined$"):
        backdoor_metrics(model, x[y == 0], y[y == 0], _Corner())


def test_clean_label_keeps_labels_and_perturbs_target_class(digits_tensors, digits_cnn):
    pytest.importorskip("robustlr.attacks.pgd")
    from robustlr.attacks.poisoning import CleanLabel

    x, y, _, _ = digits_tensors
    attack = CleanLabel(rate=0.02, target=0, eps=0.1, steps=5)
    out = attack.poison(x, y, num_classes=10, generator=gen(), model=digits_cnn)
    assert torch.equal(out.y, y) and (y[out.indices] == 0).all() and len(out.indices) == 28
    inside = attack.apply_trigger(out.x[out.indices])
    assert torch.equal(inside, out.x[out.indices])  # the trigger is on
    delta = (out.x - x)[out.indices][:, :, :5, :]   # rows above the patch: PGD only
    assert delta.abs().max() <= 0.1 + 1e-6 and delta.abs().max() > 0
    with pytest.raises(ValueError, match="^model "):
        attack.poison(x, y, num_classes=10, generator=gen())
