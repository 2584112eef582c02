"""The one bounds rule: which values hold, by how much slack, and how options parse."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robustlr.errors import InputError
from robustlr.results.bounds import TOLERANCE, Bound, from_mapping, parse


@pytest.mark.parametrize("kind,value,holds", [
    ("min", 0.9, True), ("min", 0.8999, False), ("min", 1.0, True),
    ("max", 3.0, True), ("max", 3.0001, False), ("max", -1.0, True),
])
def test_holds_on_the_right_side_of_the_limit(kind, value, holds):
    limit = 0.9 if kind == "min" else 3.0
    assert Bound(kind, "m", limit).holds(value) is holds


def test_one_rounding_error_short_still_holds_but_not_more():
    # the slack is relative to the limit when |limit| > 1, absolute below
    assert Bound("max", "epsilon", 3.0).holds(3.0 * (1 + 0.5 * TOLERANCE))
    assert not Bound("max", "epsilon", 3.0).holds(3.0 * (1 + 2 * TOLERANCE))
    assert Bound("min", "acc", 0.5).holds(0.5 - 0.5 * TOLERANCE)
    assert not Bound("min", "acc", 0.5).holds(0.5 - 2 * TOLERANCE)
    assert Bound("min", "acc", -200.0).holds(-200.0 * (1 + 0.5 * TOLERANCE))
    assert not Bound("min", "acc", -200.0).holds(-200.0 * (1 + 2 * TOLERANCE))


@pytest.mark.parametrize("value", [None, True, False, "0.5", math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("kind", ["min", "max"])
def test_missing_or_non_finite_never_holds(kind, value):
    assert not Bound(kind, "m", 0.5).holds(value)


def test_integers_count_as_numbers():
    assert Bound("min", "m", 1.0).holds(2) and not Bound("max", "m", 1.0).holds(2)


@settings(max_examples=200, deadline=None)
@given(limit=st.floats(-1e6, 1e6), value=st.floats(-1e6, 1e6))
def test_min_and_max_agree_away_from_the_limit(limit, value):
    slack = TOLERANCE * max(1.0, abs(limit))
    if abs(value - limit) > 2 * slack:
        assert Bound("min", "m", limit).holds(value) is (value > limit)
        assert Bound("max", "m", limit).holds(value) is (value < limit)


def test_text_names_metric_direction_and_limit():
    assert Bound("min", "steps", 90.0).text == "steps >= 90"
    assert Bound("max", "epsilon", 2.5).text == "epsilon <= 2.5"


def test_parse_builds_bounds_named_after_the_option():
    found = parse("--max", ["epsilon=3", " steps =0.5"], ["epsilon", "steps"])
    assert found == [Bound("max", "epsilon", 3.0), Bound("max", "steps", 0.5)]
    assert parse("--min", [], ["epsilon"]) == []


@pytest.mark.parametrize("text", ["epsilon", "=3", "epsilon=", "epsilon=abc", "epsilon=nan",
                                  "epsilon=inf"])
def test_parse_rejects_malformed_with_the_option_named(text):
    with pytest.raises(InputError, match=r"^--min: expected NAME=NUMBER.*got '"):
        parse("--min", [text], ["epsilon"])


def test_parse_rejects_unknown_metric_and_lists_allowed():
    with pytest.raises(InputError, match=r"--max: unknown metric 'loss'; allowed: a, epsilon$"):
        parse("--max", ["loss=1"], ["epsilon", "a"])


def test_the_slack_edge_itself_holds():
    # exactly one slack away is still inside (>=/<=, not >/<)
    assert Bound("min", "m", 0.5).holds(0.5 - TOLERANCE)
    assert Bound("max", "m", 0.5).holds(0.5 + TOLERANCE)


def test_shares_are_written_and_shown_in_percent():
    (bound,) = parse("--min", ["clean_acc=96%"], ["clean_acc"])
    assert bound == Bound("min", "clean_acc", 0.96)
    assert bound.shown(0.5) == 50.0 and Bound("max", "epsilon", 1.0).shown(0.5) == 0.5
    assert bound.text == "clean_acc >= 96%"
    assert from_mapping("min", {"clean_acc": 90, "epsilon": 2}) == [
        Bound("min", "clean_acc", 0.9), Bound("min", "epsilon", 2.0)]


def test_a_share_written_as_a_fraction_is_refused_naming_the_option():
    with pytest.raises(InputError, match=r"^--min: clean_acc is in percent"):
        parse("--min", ["clean_acc=0.5"], ["clean_acc"])
    with pytest.raises(InputError, match=r"^report\.max: clean_acc is in percent"):
        from_mapping("max", {"clean_acc": 0.5})


def test_only_the_first_equals_sign_splits_name_from_number():
    with pytest.raises(InputError, match=r"^--max: expected NAME=NUMBER"):
        parse("--max", ["epsilon=1=2"], ["epsilon", "epsilon=1"])
