"""Poison filters: budgets, recall on digits, agreement with ART, representations."""

from __future__ import annotations

import pytest
import torch
from conftest import small_cnn, train_plain
from torch import nn

from robustlr.attacks.filters import FILTERS, FilterInputs, removal_budget
from robustlr.attacks.filters.metrics import filter_metrics
from robustlr.attacks.filters.representations import penultimate
from robustlr.attacks.poisoning import BadNets, LabelFlip

FEATURE_FILTERS = [name for name, cls in FILTERS.items() if "features" in cls.needs]


def poisoned_features(digits_tensors, attack, epochs=8):
    x, y, _, _ = digits_tensors
    poisoned = attack.poison(x, y, num_classes=10, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = train_plain(small_cnn(), poisoned.x, poisoned.y, epochs=epochs)
    return poisoned, penultimate(model, poisoned.x)


@pytest.fixture(scope="module")
def badnets_case(digits_tensors):
    """Digits, BadNets 3x3 at 5% of the set (70 poisons, a third of class 0), 8 epochs."""
    return poisoned_features(digits_tensors, BadNets(rate=0.05, target=0))


def grid_cnn() -> nn.Module:
    """The grid's default model, robustlr's ``cnn`` (conv-BatchNorm-ReLU-pool twice, 128
    hidden units), rebuilt here so these tests stay independent of robustlr."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 2 * 2, 128), nn.ReLU(), nn.Linear(128, 10))


@pytest.fixture(scope="module", params=[0, 1])
def badnets_grid_case(request, digits_tensors):
    """As the grid filters: BadNets 5% (70 poisons) drawn with the seed, the grid's model
    trained on the poisoned set for 4 epochs (``filtering.epochs``) with the same seed."""
    x, y, _, _ = digits_tensors
    seed = request.param
    poisoned = BadNets(rate=0.05, target=0).poison(x, y, num_classes=10,
                                                   generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    model = train_plain(grid_cnn(), poisoned.x, poisoned.y, epochs=4, seed=seed)
    return poisoned, penultimate(model, poisoned.x)


@pytest.fixture(scope="module")
def flip_case(digits_tensors):
    return poisoned_features(digits_tensors, LabelFlip(rate=0.2, source=1, target=7))


def target_class_inputs(poisoned):
    """Tran et al.'s protocol: the poisoned class alone, epsilon = its poisoned fraction."""
    members = (poisoned.y == poisoned.target).nonzero().flatten()
    inside = torch.isin(members, poisoned.indices).nonzero().flatten()
    return members, inside, len(inside) / len(members)


def test_penultimate_is_head_input_and_restores_mode(digits_cnn, digits_tensors):
    x = digits_tensors[0][:37]
    digits_cnn.train()
    features = penultimate(digits_cnn, x, batch_size=10)
    assert digits_cnn.training and features.dtype == torch.float32 and features.shape == (37, 64)
    digits_cnn.eval()
    with torch.no_grad():
        assert torch.allclose(digits_cnn[-1](features), digits_cnn(x), atol=1e-5)
        # batches of 10 against one batch of 37: float kernels differ in the last bits across
        # batch shapes, so only a tolerance is stable (docs/facts.md: an exact compare flaked)
        assert torch.allclose(features, digits_cnn[:-1](x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", FEATURE_FILTERS + ["loss_trajectory"])
def test_clean_data_removal_within_budget(name, digits_cnn, digits_tensors):
    x, y, _, _ = digits_tensors
    inputs = FilterInputs(y, 10, features=penultimate(digits_cnn, x),
                          losses=torch.rand(len(y), 5, generator=torch.Generator().manual_seed(0)),
                          expected_rate=0.05)
    result = FILTERS[name]().fit_predict(inputs)
    assert result.keep.dtype == torch.bool and result.scores.shape == (len(y),)
    assert int((~result.keep).sum()) <= removal_budget(len(y), 1.5, 0.05) == 105


@pytest.mark.parametrize("name", ["spectral", "activation_clustering"])
def test_recall_on_badnets_target_class(name, badnets_case):
    poisoned, features = badnets_case
    members, inside, eps = target_class_inputs(poisoned)
    inputs = FilterInputs(torch.zeros(len(members), dtype=torch.int64), 1,
                          features=features[members], expected_rate=eps)
    metrics = filter_metrics(FILTERS[name]().fit_predict(inputs).keep, inside)
    assert metrics["filter_recall"] >= 0.8  # measured 0.93 (spectral), 0.91 (AC)


@pytest.mark.parametrize("name,floor", [("spectral", 0.85), ("activation_clustering", 0.9)])
def test_recall_on_badnets_whole_set(name, floor, badnets_case):
    # one 105-example budget over all classes, target unknown; chance would catch 7.5%. The
    # former global allocation measured 0.49 (spectral) and 0.80 (AC) here
    poisoned, features = badnets_case
    inputs = FilterInputs(poisoned.y, 10, features=features, expected_rate=poisoned.fraction)
    metrics = filter_metrics(FILTERS[name]().fit_predict(inputs).keep, poisoned.indices)
    assert metrics["filter_recall"] >= floor  # measured 0.93 (spectral), 1.00 (AC)


@pytest.mark.parametrize("name", ["spectral", "activation_clustering"])
def test_recall_on_badnets_whole_set_grid_model(name, badnets_grid_case):
    # the acceptance case, target unknown: the flagged class gets the budget
    poisoned, features = badnets_grid_case
    inputs = FilterInputs(poisoned.y, 10, features=features, expected_rate=poisoned.fraction)
    result = FILTERS[name]().fit_predict(inputs)
    metrics = filter_metrics(result.keep, poisoned.indices)
    assert metrics["filter_recall"] >= 0.9  # measured 1.00 on seeds 0 and 1 for both
    assert metrics["filter_precision"] >= 0.6  # 0.69; 70 / 102 removed is the most possible
    assert not bool((~result.keep & (poisoned.y != poisoned.target)).any())


@pytest.mark.parametrize("name", ["spectral", "activation_clustering"])
def test_flagged_class_takes_the_budget_but_keeps_its_majority(name):
    # 40 planted points (the expected 4%) in class 5 of 10 Gaussian classes of 100
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat_interleave(100)
    features = torch.randn(1000, 16, generator=g)
    planted = torch.arange(500, 540)
    features[planted] += 6.0 * torch.nn.functional.one_hot(torch.tensor(3), 16)
    inputs = FilterInputs(labels, 10, features=features, expected_rate=0.04)
    keep = FILTERS[name]().fit_predict(inputs).keep
    assert int((~keep).sum()) == 50 < removal_budget(1000, 1.5, 0.04)  # half of class 5
    assert set(labels[~keep].tolist()) == {5}
    assert filter_metrics(keep, planted)["filter_recall"] == 1.0
    # no class loses more than half of itself, whatever the budget
    huge = FILTERS[name](removal=15.0).fit_predict(inputs).keep
    assert int(torch.bincount(labels[~huge], minlength=10).max()) <= 50


@pytest.mark.parametrize("name,allocation", [("spectral", "global"), ("spectral", "per_class"),
                                             ("activation_clustering", "relative_size")])
def test_former_allocations_stay_available(name, allocation, badnets_case):
    poisoned, features = badnets_case
    inputs = FilterInputs(poisoned.y, 10, features=features, expected_rate=poisoned.fraction)
    keep = FILTERS[name](allocation=allocation).fit_predict(inputs).keep
    assert int((~keep).sum()) <= removal_budget(len(keep), 1.5, poisoned.fraction)
    assert filter_metrics(keep, poisoned.indices)["filter_recall"] >= 0.2  # measured 0.39-0.80


def test_knn_recall_on_label_flip(flip_case):
    poisoned, features = flip_case
    inputs = FilterInputs(poisoned.y, 10, features=features, expected_rate=poisoned.fraction)
    metrics = filter_metrics(FILTERS["knn"]().fit_predict(inputs).keep, poisoned.indices)
    assert metrics["filter_recall"] >= 0.7  # measured 1.0, precision 0.66


def test_spectral_agrees_with_art_on_class_centred_features(badnets_case):
    # ART projects uncentred features; on features whose class means are zero its score is
    # Tran's centred one, so per-class quotas must flag nearly the same examples (ours centres
    # on the median, the only remaining difference)
    poisoned, features = badnets_case
    groups = [poisoned.y == c for c in range(10)]
    centred = features.clone()
    for mask in groups:
        centred[mask] -= centred[mask].mean(0)
    inputs = FilterInputs(poisoned.y, 10, features=centred, expected_rate=poisoned.fraction)
    ours = ~FILTERS["spectral"](allocation="per_class").fit_predict(inputs).keep
    art = ~FILTERS["art_spectral"]().fit_predict(inputs).keep
    jaccard = (ours & art).sum() / (ours | art).sum()
    assert abs(int(ours.sum()) - int(art.sum())) <= 10  # quantile vs count rounding per class
    assert jaccard >= 0.75, jaccard  # measured 0.86 (0.14 on uncentred features)


def test_loss_trajectory_flags_fast_and_never_fitted():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (1000,), generator=g)
    epochs = torch.arange(1, 6).float()
    losses = 2.0 / epochs + 0.3 * torch.rand(1000, 5, generator=g)  # clean: slow decay
    losses[:20] = 0.01                                               # backdoor: fitted at once
    losses[20:40] = 2.5                                              # flips: never fitted
    inputs = FilterInputs(labels, 10, losses=losses, expected_rate=0.04)
    for mode, truth in [("fast", range(20)), ("never", range(20, 40)), ("both", range(40))]:
        keep = FILTERS["loss_trajectory"](mode=mode, removal=1.0,
                                          expected_rate=len(truth) / 1000).fit_predict(inputs).keep
        assert filter_metrics(keep, torch.tensor(list(truth)))["filter_recall"] == 1.0


def test_filter_metrics_values():
    # 10 examples, poison at 0-3; removed 0, 1, 4: caught 2 of 3 removed, 2 of 4 poisons,
    # 1 of 6 clean examples. Precision, recall and the clean share all differ, so a swapped
    # denominator cannot pass.
    keep = torch.ones(10, dtype=torch.bool)
    keep[[0, 1, 4]] = False
    metrics = filter_metrics(keep, torch.tensor([0, 1, 2, 3]))
    precision, recall = 2 / 3, 2 / 4
    assert metrics == {"filter_precision": precision, "filter_recall": recall,
                       "filter_f1": pytest.approx(2 * precision * recall / (precision + recall)),
                       "clean_removed": 1 / 6}


@pytest.mark.parametrize("removed,poisoned,expected", [
    ([], [0, 1], {"filter_precision": 0.0, "filter_recall": 0.0, "filter_f1": 0.0,
                  "clean_removed": 0.0}),
    ([2], [], {"filter_precision": 0.0, "filter_recall": 1.0, "filter_f1": 0.0,
               "clean_removed": 1 / 4}),
    ([0, 1], [0, 1], {"filter_precision": 1.0, "filter_recall": 1.0, "filter_f1": 1.0,
                      "clean_removed": 0.0}),
    ([0, 1, 2, 3], [0, 1, 2, 3], {"filter_precision": 1.0, "filter_recall": 1.0,
                                  "filter_f1": 1.0, "clean_removed": 0.0}),
])
def test_filter_metrics_edges(removed, poisoned, expected):
    """Nothing removed: precision 0; no poison: recall 1; every example poisoned: no clean
    example to remove, clean_removed 0 (not a division by zero)."""
    keep = torch.ones(4, dtype=torch.bool)
    keep[removed] = False
    assert filter_metrics(keep, torch.tensor(poisoned, dtype=torch.int64)) == expected


def test_filter_metrics_accepts_an_integer_keep_mask():
    keep = torch.tensor([0, 1, 1, 0])
    assert filter_metrics(keep, torch.tensor([0]))["filter_precision"] == 0.5


@pytest.mark.parametrize("make,field", [
    (lambda: FILTERS["spectral"](removal=0), "removal"),
    (lambda: FILTERS["spectral"](expected_rate=1.5), "expected_rate"),
    (lambda: FILTERS["spectral"](allocation="x"), "allocation"),
    (lambda: FILTERS["activation_clustering"](allocation="x"), "allocation"),
    (lambda: FILTERS["knn"](k=0), "k"), (lambda: FILTERS["loss_trajectory"](mode="x"), "mode")])
def test_bad_parameters_name_the_field(make, field):
    with pytest.raises(ValueError, match=f"^{field} "):
        make()


def test_missing_inputs_are_named():
    with pytest.raises(ValueError, match="^features "):
        FILTERS["spectral"]().fit_predict(FilterInputs(torch.zeros(3, dtype=torch.int64), 2))
    with pytest.raises(ValueError, match="^expected_rate "):
        FILTERS["knn"]().fit_predict(FilterInputs(torch.zeros(3, dtype=torch.int64), 2,
                                                  features=torch.rand(3, 4)))


def test_filters_survive_a_class_whose_scatter_matrix_defeats_float32_eigh():
    """Penultimate features of one digits class (60 dead ReLU units) on which float32
    ``torch.linalg.eigh`` fails to converge; the default-audit trial crashed on it once."""
    from pathlib import Path

    from robustlr.attacks.filters.activation_clustering import pca
    from robustlr.attacks.filters.spectral import spectral_projection

    features = torch.load(Path(__file__).parents[1] / "fixtures" / "ill_conditioned_class.pt")
    assert torch.isfinite(pca(features, 10)).all()
    assert torch.isfinite(spectral_projection(features)).all()
