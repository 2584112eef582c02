"""The one reading of a number from a summary or a file, and of the epsilon a trial promised."""

import math

import pytest

from robustlr.records import finite, requested_epsilon


@pytest.mark.parametrize("value, expected", [(1, 1.0), (0.5, 0.5), (-2, -2.0), (0, 0.0)])
def test_finite_takes_finite_numbers_as_floats(value, expected):
    assert finite(value) == expected and isinstance(finite(value), float)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, False, "1.5", None, [1]])
def test_finite_refuses_what_is_not_a_finite_number(value):
    assert finite(value) is None


def test_requested_epsilon_is_the_target_else_the_cap():
    assert requested_epsilon({"target_epsilon": 3.0, "max_epsilon": 8.0}) == 3.0
    assert requested_epsilon({"target_epsilon": None, "max_epsilon": 8.0}) == 8.0
    assert requested_epsilon({"target_epsilon": math.nan, "max_epsilon": 8}) == 8.0
    assert requested_epsilon({"epsilon": 2.0}) is None
