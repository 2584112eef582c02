"""The one spec grammar: parsing, errors and the registry's checks."""

from dataclasses import dataclass

import pytest

from robustlr.spec import Registry, Spec, SpecError, parse


def test_string_and_mapping_forms_parse_to_the_same_spec():
    text = parse("step(milestones=[0.5, 0.75], gamma=0.1)")
    mapping = parse({"name": "step", "milestones": [0.5, 0.75], "gamma": 0.1})
    assert text == mapping == Spec("step", (("milestones", (0.5, 0.75)), ("gamma", 0.1)))


def test_values_allow_arithmetic_words_and_booleans():
    spec = parse("pgd(eps=8/255, norm=linf, early_stop=true, label='a b')")
    assert spec.kwargs == {"eps": 8 / 255, "norm": "linf", "early_stop": True, "label": "a b"}


def test_printing_a_spec_round_trips():
    spec = parse("cosine(warmup=0.05, floor=0.01)")
    assert parse(str(spec)) == spec
    assert str(parse("constant")) == "constant"


@pytest.mark.parametrize("text, fragment", [
    ("cosine(0.05)", "parameters must be named"),
    ("cosine(warmup=", "not of the form"),
    ("cosine(warmup=__import__('os'))", "unsupported value"),
    ("a.b(x=1)", "not of the form"),
    ("x(y=1/0)", "division by zero"),
])
def test_malformed_specs_are_one_line_errors(text, fragment):
    with pytest.raises(SpecError, match=fragment) as info:
        parse(text)
    assert "\n" not in str(info.value)


def test_mapping_without_name_is_an_error():
    with pytest.raises(SpecError, match="needs a 'name'"):
        parse({"gamma": 0.1})


@pytest.fixture
def registry():
    things = Registry("thing")

    @things.register("box")
    @dataclass(frozen=True)
    class Box:
        """A box."""
        size: float = 1.0
        marks: tuple[float, ...] = ()
        count: int = 1

        def __post_init__(self):
            if self.size < 0:
                raise ValueError(f"size must be >= 0, got {self.size}")

    return things


def test_registry_coerces_ints_to_floats_and_lists_to_tuples(registry):
    box = registry.build("box(size=2, marks=[1, 2], count=3.0)")
    assert box.size == 2.0 and isinstance(box.size, float)
    assert box.marks == (1.0, 2.0) and box.count == 3


@pytest.mark.parametrize("text, fragment", [
    ("crate", "thing 'crate' is unknown; allowed: box"),
    ("box(colour=1)", "unknown parameter 'colour'; allowed: size, marks, count"),
    ("box(size=-1)", "thing 'box': size must be >= 0, got -1.0"),
    ("box(size=big)", "parameter 'size' must be a number"),
    ("box(count=1.5)", "parameter 'count' must be an integer"),
])
def test_registry_errors_name_the_parameter_and_what_is_allowed(registry, text, fragment):
    with pytest.raises(SpecError, match=fragment):
        registry.build(text)


def test_context_arguments_are_not_user_parameters():
    things = Registry("model")

    @things.register("net")
    def net(*, input_shape, width: int = 4):
        return (input_shape, width)

    assert things.build("net(width=8)", input_shape=(1, 8, 8)) == ((1, 8, 8), 8)
    with pytest.raises(SpecError, match="unknown parameter 'input_shape'; allowed: width"):
        things.build("net(input_shape=3)", input_shape=(1,))
