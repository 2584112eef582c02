"""Fuzzing the spec grammar and whole configs: whatever the text, the only escapes are SpecError
and ConfigError (one line each), and nothing hangs (every example runs under a hard time limit,
not only hypothesis' deadline, which reports a slow example but cannot stop a hung one)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import robustlr.catalog  # noqa: F401  (imported once here, not inside a timed example)
from robustlr import experiment
from robustlr.config import ConfigError
from robustlr.safe_yaml import YamlInputError, load_text
from robustlr.spec import SpecError, parse

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _hostile_fuzz():
    """The battery's own hard time limit (tools/ is not a package), so both stop a hung example
    the same way."""
    path = Path(__file__).resolve().parents[2] / "tools" / "hostile_fuzz.py"
    spec = importlib.util.spec_from_file_location("hostile_fuzz", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


time_limit = _hostile_fuzz().time_limit


def _one_line(error: Exception) -> None:
    assert "\n" not in str(error) and len(str(error)) < 600


numbers = st.one_of(st.integers(-10**30, 10**30).map(str), st.floats(allow_nan=True).map(repr),
                    st.sampled_from(["9", "2.0", "1e308", "8/255", "0", "-1", "inf", "nan"]))


@st.composite
def expressions(draw, depth: int = 0):
    if depth > 4 or draw(st.booleans()):
        return draw(st.one_of(numbers, st.sampled_from(["true", "none", "linf", "'a b'", "x"])))
    kind = draw(st.sampled_from(["binary", "unary", "list", "paren"]))
    if kind == "binary":
        op = draw(st.sampled_from(["+", "-", "*", "/", "**", "%", "//", "@", "<<"]))
        return f"{draw(expressions(depth + 1))}{op}{draw(expressions(depth + 1))}"
    if kind == "unary":
        return draw(st.sampled_from(["-", "+", "~", "not "])) + draw(expressions(depth + 1))
    if kind == "list":
        return "[" + ", ".join(draw(st.lists(expressions(depth + 1), max_size=3))) + "]"
    return f"({draw(expressions(depth + 1))})"


@st.composite
def specs(draw):
    name = draw(st.sampled_from(["cosine", "step", "x", "a.b", "f()", ""]))
    keys = draw(st.lists(st.sampled_from(["warmup", "gamma", "k", "**k", ""]), max_size=3))
    inner = ", ".join(f"{key}={draw(expressions())}" for key in keys)
    return f"{name}({inner})" if draw(st.booleans()) else name + inner


@FUZZ
@given(text=st.one_of(specs(), st.text(max_size=200)))
def test_the_grammar_raises_only_spec_errors_and_never_hangs(text):
    with time_limit(2.0):
        try:
            spec = parse(text)
        except SpecError as error:
            _one_line(error)
            return
    assert parse(str(spec)) == spec  # what parses prints back to itself


@FUZZ
@given(value=st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=30))
def test_mapping_specs_raise_only_spec_errors(value):
    with time_limit(2.0):
        try:
            parse({"name": "step", "gamma": value})
        except SpecError as error:
            _one_line(error)


FIELDS = {
    "name": st.text(max_size=20),
    "schedules": st.lists(st.one_of(specs(), st.text(max_size=30)), max_size=3),
    "lr_scales": st.lists(st.floats(), max_size=3),
    "seeds": st.lists(st.integers(-2**70, 2**70), max_size=3),
    "train": st.fixed_dictionaries({}, optional={
        "epochs": st.integers(-5, 10**12), "batch_size": st.one_of(st.integers(), st.floats()),
        "lr": st.floats(), "device": st.text(max_size=10), "weight_decay": st.floats()}),
    "model": st.one_of(specs(), st.just({"name": "mlp", "hidden": [-1]})),
    "data": st.fixed_dictionaries({"name": st.just("synthetic")}, optional={
        "split_seed": st.integers(-2**40, 2**40), "limit": st.integers(-5, 10**10),
        "synthetic": st.fixed_dictionaries({}, optional={
            "num_examples": st.one_of(st.integers(-5, 10**12), st.floats()),
            "shape": st.lists(st.integers(-2, 10**6), max_size=4)})}),
}


@settings(FUZZ, max_examples=30)
@given(raw=st.fixed_dictionaries({}, optional=FIELDS))
def test_whole_configs_raise_only_config_errors(raw):
    with time_limit(5.0):
        try:
            experiment.from_mapping(raw)
        except ConfigError as error:
            _one_line(error)


@FUZZ
@given(text=st.one_of(st.text(max_size=300),
                      st.builds(lambda body, anchors: anchors + body,
                                st.text(alphabet="[]{}:,-&*ab \n", max_size=200),
                                st.sampled_from(["", "x: &a [1, 2]\n", "y: &b {k: *a}\n"]))))
def test_yaml_text_raises_only_input_errors(text):
    with time_limit(3.0):
        try:
            load_text(text, source="fuzz")
        except YamlInputError as error:
            _one_line(error)


def test_a_repeated_yaml_key_is_refused_but_a_merge_override_is_not():
    with pytest.raises(YamlInputError, match="repeated at line 2"):
        load_text("a: 1\na: 2\n", source="c.yaml")
    assert load_text("b: &b {k: 1}\nc: {<<: *b, k: 2}\n", source="c.yaml")["c"] == {"k": 2}
    assert yaml.safe_load("a: 1\na: 2\n") == {"a": 2}  # what PyYAML alone would have done


@pytest.mark.parametrize("text", ["x(a=~" + "-" * 1900 + "1)", "x(a=" + "-" * 1990 + "1)",
                                  "x(a=" + "1+" * 900 + "1)", "x(a=" + "[" * 150 + "]" * 150 + ")"])
def test_deep_expressions_are_one_line_not_a_recursion_error(text):
    with time_limit(2.0), pytest.raises(SpecError) as error:
        parse(text)
    _one_line(error.value)
