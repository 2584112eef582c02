"""Ledger entries without a DP guarantee (shuffled batches) carry an infinite epsilon, and an
out-of-scope entry (a filter's pass under dp(scope=after_filter)) costs nothing; either way the
total says whether it is a guarantee."""

from __future__ import annotations

import math

import pytest

from robustlr.privacy.ledger import Entry, Ledger

SGD = Entry(name="dp_sgd", mechanism="subsampled_gaussian", epsilon=1.5, delta=1e-5)


@pytest.mark.parametrize("mechanism, epsilon, delta, message", [
    ("shuffled_gaussian", 2.6, 0.0, "has no finite epsilon"),
    ("out_of_scope", 0.1, 0.0, "costs nothing"),
    ("out_of_scope", 0.0, 1e-6, "costs nothing"),
])
def test_a_mechanism_refuses_a_cost_it_cannot_have(mechanism, epsilon, delta, message):
    with pytest.raises(ValueError, match=message):
        Entry(name="x", mechanism=mechanism, epsilon=epsilon, delta=delta)


def test_an_entry_without_a_guarantee_makes_the_total_no_guarantee():
    shuffled = Entry(name="dp_sgd", mechanism="shuffled_gaussian", epsilon=math.inf)
    assert Ledger((SGD,)).guaranteed and not Ledger((SGD, shuffled)).guaranteed
    assert Ledger.from_records(Ledger((shuffled,)).records()).entries == (shuffled,)


def test_an_out_of_scope_entry_adds_nothing_to_the_total():
    scoped = Entry(name="filter", mechanism="out_of_scope", epsilon=0.0, detail={"kept": 123})
    ledger = Ledger((scoped, SGD))
    assert ledger.epsilon == 1.5 and ledger.delta == 1e-5 and ledger.guaranteed
