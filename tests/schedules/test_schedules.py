"""Schedules: closed-form values at known points, the step convention, the spec grammar."""

from __future__ import annotations

import math
import warnings
from decimal import Decimal

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robustlr import schedules
from robustlr.schedules import SCHEDULES, parse, values
from robustlr.spec import SpecError

ALL = SCHEDULES.names()


# --- closed forms -------------------------------------------------------------------------

def test_constant_is_exactly_one_everywhere():
    """A constant-1 schedule equals training without a schedule."""
    assert values(parse("constant"), 257) == [1.0] * 257
    assert parse("constant")(1.0) == 1.0


@pytest.mark.parametrize("floor", [0.0, 0.1])
def test_cosine_closed_form(floor):
    schedule = parse(f"cosine(floor={floor})")
    assert schedule(0.0) == pytest.approx(1.0)
    assert schedule(0.5) == pytest.approx((1 + floor) / 2)
    assert schedule(0.25) == pytest.approx(floor + (1 - floor) * (1 + math.cos(math.pi / 4)) / 2)
    assert schedule(1.0) == pytest.approx(floor)


def test_cosine_after_warmup_runs_over_the_rest():
    schedule = parse("cosine(warmup=0.2, floor=0.0)")
    assert schedule(0.2) == pytest.approx(1.0)
    assert schedule(0.6) == pytest.approx(0.5)  # halfway through the post-warmup 0.8
    assert schedule(1.0) == pytest.approx(0.0, abs=1e-12)


def test_step_just_before_and_after_milestones():
    schedule = parse("step(milestones=[0.5, 0.75], gamma=0.1)")
    eps = 1e-9
    assert schedule(0.0) == 1.0
    assert schedule(0.5 - eps) == 1.0
    assert schedule(0.5) == pytest.approx(0.1)
    assert schedule(0.75 - eps) == pytest.approx(0.1)
    assert schedule(0.75) == pytest.approx(0.01)
    assert schedule(1.0) == pytest.approx(0.01)


def test_step_milestones_count_from_the_start_even_with_warmup():
    schedule = parse("step(milestones=[0.5], gamma=0.5, warmup=0.1)")
    assert schedule(0.05) == pytest.approx(0.5)  # warmup ramp
    assert schedule(0.3) == 1.0
    assert schedule(0.5) == pytest.approx(0.5)


def test_exponential_reaches_final_at_the_end():
    schedule = parse("exponential(final=0.01)")
    assert schedule(0.0) == 1.0
    assert schedule(0.5) == pytest.approx(0.1)
    assert schedule(1.0) == pytest.approx(0.01)


def test_linear_and_polynomial():
    linear = parse("linear(final=0.2)")
    assert [linear(p) for p in (0.0, 0.25, 0.5, 1.0)] == pytest.approx([1.0, 0.8, 0.6, 0.2])
    poly = parse("polynomial(power=2, final=0.1)")
    assert poly(0.5) == pytest.approx(0.1 + 0.9 * 0.25)
    assert poly(1.0) == pytest.approx(0.1)
    power_one = parse("polynomial(power=1, final=0.2)")
    assert values(power_one, 50) == pytest.approx(values(linear, 50))


def test_inverse_sqrt_is_the_transformer_schedule():
    schedule = parse("inverse_sqrt(warmup=0.1)")
    assert schedule(0.05) == pytest.approx(0.5)
    assert schedule(0.1) == pytest.approx(1.0)
    assert schedule(0.4) == pytest.approx(math.sqrt(0.1 / 0.4))  # = 0.5
    assert schedule(1.0) == pytest.approx(math.sqrt(0.1))
    explicit = parse("inverse_sqrt(warmup=0, timescale=0.25)")
    assert explicit(0.0) == 1.0
    assert explicit(0.75) == pytest.approx(0.5)


@pytest.mark.parametrize("shape, at_090", [("linear", 0.5), ("cosine", 0.5),
                                          ("sqrt", 1 - math.sqrt(0.5))])
def test_wsd_phases(shape, at_090):
    schedule = parse(f"wsd(warmup=0.1, decay=0.2, shape={shape})")
    assert schedule(0.05) == pytest.approx(0.5)    # warmup
    assert schedule(0.1) == 1.0                    # stable starts
    assert schedule(0.5) == 1.0
    assert schedule(0.8) == 1.0                    # decay starts
    assert schedule(0.9) == pytest.approx(at_090)  # halfway through the decay
    assert schedule(1.0) == pytest.approx(0.0, abs=1e-12)
    assert parse(f"wsd(shape={shape}, final=0.1)")(1.0) == pytest.approx(0.1)


def test_cosine_restarts_restart_points():
    schedule = parse("cosine_restarts(cycles=3, mult=2, floor=0.05)")
    assert schedule.restarts() == pytest.approx([0.0, 1 / 7, 3 / 7])
    for start, end in [(0.0, 1 / 7), (1 / 7, 3 / 7), (3 / 7, 1.0)]:
        assert schedule(start + 1e-12) == pytest.approx(1.0)
        assert schedule((start + end) / 2) == pytest.approx((1 + 0.05) / 2)
        assert schedule(end - 1e-9) == pytest.approx(0.05, abs=1e-6)
    equal = parse("cosine_restarts(cycles=4, mult=1)")
    assert equal.restarts() == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert equal(0.5) == pytest.approx(1.0)
    assert equal(0.625) == pytest.approx(0.5)
    warm = parse("cosine_restarts(cycles=2, mult=1, warmup=0.2)")
    assert warm.restarts() == pytest.approx([0.2, 0.6])
    assert warm(0.6) == pytest.approx(1.0)  # exactly at a restart despite rounding
    assert values(equal, 8)[2] == pytest.approx(1.0)


def _torch_onecycle(steps: int, **kwargs) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=steps,
                                                    **kwargs)
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
        for _ in range(steps):  # the LR each optimizer step would use (no update needed)
            lrs.append(optimizer.param_groups[0]["lr"])
            if len(lrs) < steps:
                scheduler.step()
    return lrs


@pytest.mark.parametrize("spec, torch_kwargs", [
    ("onecycle", {}),
    ("onecycle(peak_at=0.25, div_factor=10, final_div_factor=100, anneal=linear)",
     dict(pct_start=0.25, div_factor=10, final_div_factor=100, anneal_strategy="linear")),
    ("onecycle(three_phase=true)", dict(three_phase=True)),
    # linear annealing is not periodic: a wrong t in the second phase shows only here
    ("onecycle(three_phase=true, peak_at=0.25, anneal=linear)",
     dict(three_phase=True, pct_start=0.25, anneal_strategy="linear")),
])
def test_onecycle_matches_torch(spec, torch_kwargs):
    steps = 2000
    ours = values(parse(spec), steps)
    reference = _torch_onecycle(steps, **torch_kwargs)
    # torch puts the peak at step peak_at*N - 1 and the end at N - 1: an O(1/N) offset
    assert ours == pytest.approx(reference, abs=10.0 / steps)
    assert max(ours) == pytest.approx(1.0, abs=1e-4)


def test_onecycle_endpoints():
    schedule = parse("onecycle(peak_at=0.3, div_factor=25, final_div_factor=1e4)")
    assert schedule(0.0) == pytest.approx(1 / 25)
    assert schedule(0.3) == pytest.approx(1.0)
    assert schedule(1.0) == pytest.approx(1 / 25 / 1e4)


def test_cyclic_peaks_and_minima():
    schedule = parse("cyclic(cycles=4, min=0.2)")
    for k in range(4):
        assert schedule((k + 0.5) / 4) == pytest.approx(1.0)
        assert schedule(k / 4) == pytest.approx(0.2)
        assert schedule((k + 0.25) / 4) == pytest.approx(0.6)
    assert schedule(1.0) == pytest.approx(0.2)


WARMUP_NAMES = ["constant", "step", "exponential", "linear", "polynomial", "cosine",
                "inverse_sqrt", "wsd", "cosine_restarts", "plateau"]


@pytest.mark.parametrize("name", WARMUP_NAMES)
def test_warmup_starts_at_zero_and_reaches_one_at_the_warmup_fraction(name):
    schedule = parse({"name": name, "warmup": 0.1})
    assert schedule(0.0) == 0.0
    assert schedule(0.01) == pytest.approx(0.1)
    assert schedule(0.05) == pytest.approx(0.5)
    assert schedule(0.1) == pytest.approx(1.0)
    assert values(schedule, 100)[:11] == pytest.approx([s / 10 for s in range(11)])


# --- properties over every registered schedule --------------------------------------------

@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(ALL), progress=st.floats(min_value=0.0, max_value=1.0))
def test_multipliers_finite_and_in_unit_interval(name, progress):
    value = parse(name)(progress)
    assert isinstance(value, float)
    assert math.isfinite(value)
    assert 0.0 <= value <= 1.0 + 1e-12


@pytest.mark.parametrize("name", ALL)
def test_multipliers_finite_and_in_unit_interval_on_a_dense_grid(name):
    grid = values(parse(name), 10_007) + [parse(name)(1.0)]
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 + 1e-12 for v in grid)


@pytest.mark.parametrize("name", ALL)
def test_progress_outside_unit_interval_is_clamped(name):
    schedule = parse(name)
    assert schedule(-0.5) == schedule(0.0)
    assert schedule(1.5) == schedule(1.0)


def test_values_step_convention():
    """Step s of N uses schedule(s / N): the trainer's LR for the step about to be taken."""
    schedule = parse("linear")
    assert values(schedule, 4) == [1.0, 0.75, 0.5, 0.25]
    cosine = parse("cosine(warmup=0.05)")
    assert values(cosine, 37) == [cosine(s / 37) for s in range(37)]
    assert values(schedule, 0) == []
    with pytest.raises(ValueError, match="steps"):
        values(schedule, -1)


def test_only_plateau_has_a_tracker_and_only_schedule_free_is_optimizer_based():
    for name in ALL:
        schedule = parse(name)
        assert (schedule.tracker() is not None) == (name == "plateau") == schedule.metric_driven
        assert schedule.optimizer_based == (name == "schedule_free")


# --- the two exceptions -------------------------------------------------------------------

def test_plateau_reduces_after_patience_and_not_before():
    schedule = parse("plateau(patience=2, factor=0.5)")
    assert schedule(0.3) == 1.0  # time part only
    tracker = schedule.tracker()
    assert tracker.factor == 1.0
    assert tracker.observe(1.0) == 1.0  # best
    assert tracker.observe(1.0) == 1.0  # bad 1
    assert tracker.observe(0.99995) == 1.0  # bad 2: below the relative threshold 1e-4
    assert tracker.observe(1.2) == 0.5  # bad 3 > patience: reduced
    assert tracker.observe(0.5) == 0.5  # improvement resets
    assert [tracker.observe(0.6) for _ in range(3)] == [0.5, 0.5, 0.25]
    assert schedule.tracker().factor == 1.0  # a fresh tracker per run


def test_plateau_matches_torch_and_respects_min_factor():
    metrics = [3.0, 2.0, 2.5, 2.4, 2.1, 1.9, 1.9, 1.95, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=1, factor=0.5,
                                                           min_lr=0.2)
    tracker = parse("plateau(patience=1, factor=0.5, min_factor=0.2)").tracker()
    for metric in metrics:
        reference.step(metric)
        assert tracker.observe(metric) == pytest.approx(optimizer.param_groups[0]["lr"])
    assert tracker.factor == pytest.approx(0.2)


def test_plateau_tracker_state_round_trips():
    schedule = parse("plateau(patience=1)")
    tracker = schedule.tracker()
    for metric in (1.0, 2.0, 2.0, 0.5, 0.7):
        tracker.observe(metric)
    resumed = schedule.tracker()
    resumed.load_state_dict(tracker.state_dict())
    assert resumed == tracker
    assert resumed.observe(0.7) == tracker.observe(0.7) == pytest.approx(0.01)


def test_plateau_nan_is_not_an_improvement():
    tracker = parse("plateau(patience=0)").tracker()
    tracker.observe(1.0)
    assert tracker.observe(float("nan")) == pytest.approx(0.1)


def test_plateau_an_infinite_first_value_is_not_an_improvement():
    tracker = parse("plateau(patience=0, factor=0.5)").tracker()
    assert tracker.observe(math.inf) == 0.5 and tracker.best == math.inf


@pytest.mark.parametrize("first,second,reduced", [
    (1.0, 1.0, True),      # equal is not better, even with no threshold
    (2.0, 1.8, True),      # exactly threshold * best below: not better (strictly less needed)
    (2.0, 1.9, True),      # within the relative threshold (0.1 * 2 = 0.2)
    (2.0, 1.79, False),    # beyond it
])
def test_plateau_improvement_is_relative_to_the_best_and_strict(first, second, reduced):
    threshold = 0.0 if first == second else 0.1
    tracker = parse(f"plateau(patience=0, factor=0.5, threshold={threshold})").tracker()
    tracker.observe(first)
    assert tracker.observe(second) == (0.5 if reduced else 1.0)


def test_schedule_free_is_flat_and_gives_the_optimizer_warmup():
    schedule = parse("schedule_free(warmup=0.05)")
    assert values(schedule, 100) == [1.0] * 100
    assert schedule.warmup_steps(1000) == 50
    assert schedule.warmup_steps(10) == 0


# --- the spec grammar ---------------------------------------------------------------------

def test_unknown_name_lists_allowed_names():
    with pytest.raises(SpecError) as error:
        parse("cosin")
    message = str(error.value)
    assert "cosin" in message and all(name in message for name in ALL)


def test_unknown_parameter_lists_allowed_ones():
    with pytest.raises(SpecError, match=r"unknown parameter 'gama'; allowed: warmup, "
                                        r"milestones, gamma"):
        parse("step(gama=0.1)")


@pytest.mark.parametrize("spec, expected", [
    ("step(gamma=2)", r"schedule 'step': gamma must be in \(0, 1\], got 2$"),
    ("step(milestones=[0.75, 0.5])", "milestones must be strictly increasing"),
    ("step(milestones=[1.5])", r"milestones must be in \(0, 1\), got 1.5"),
    ("step(milestones=[0.05], warmup=0.1)", r"milestones must be in \(0.1, 1\)"),
    ("cosine(warmup=1)", r"warmup must be in \[0, 1\), got 1"),
    ("cosine(floor=-0.1)", "floor must be in"),
    ("exponential(final=0)", "final must be in"),
    ("polynomial(power=0)", "power must be in"),
    ("wsd(shape=square)", "shape must be one of linear, cosine, sqrt, got 'square'"),
    ("wsd(warmup=0.5, decay=0.6)", "decay must be in"),
    ("cosine_restarts(cycles=0)", "cycles must be an integer >= 1"),
    ("cosine_restarts(mult=0.5)", "mult must be in"),
    ("onecycle(peak_at=1)", "peak_at must be in"),
    ("onecycle(peak_at=0.6, three_phase=true)", r"peak_at must be in \(0, 0.5\)"),
    ("onecycle(anneal=cosine)", "anneal must be one of cos, linear"),
    ("onecycle(div_factor=0.5)", "div_factor must be in"),
    ("cyclic(min=2)", "min must be in"),
    ("inverse_sqrt(warmup=0)", "timescale must be set"),
    ("plateau(factor=1)", "factor must be in"),
    ("plateau(patience=-1)", "patience must be an integer >= 0"),
    ("step(gamma=abc)", "parameter 'gamma' must be a number"),
    ("cyclic(cycles=2.5)", "parameter 'cycles' must be an integer"),
])
def test_bad_values_name_the_parameter(spec, expected):
    with pytest.raises(SpecError, match=expected):
        parse(spec)


@pytest.mark.parametrize("cls", [schedules.Cyclic, schedules.CosineRestarts])
@pytest.mark.parametrize("cycles", [0, -1, 2.0, True, "3"])
def test_cycles_must_be_a_positive_integer_even_when_built_directly(cls, cycles):
    with pytest.raises(ValueError, match=rf"^cycles must be an integer >= 1, got {cycles!r}$"):
        cls(cycles=cycles)


@pytest.mark.parametrize("cls", [schedules.Cyclic, schedules.CosineRestarts])
def test_a_single_cycle_is_valid(cls):
    assert cls(cycles=1).cycles == 1


@pytest.mark.parametrize("mult", [1.0, 2.0])
def test_cosine_restarts_ends_at_the_floor_not_at_a_restart(mult):
    schedule = parse(f"cosine_restarts(cycles=3, mult={mult}, floor=0.1, warmup=0.1)")
    assert schedule(1.0) == pytest.approx(0.1)
    assert schedule(0.999) < 0.11


@pytest.mark.parametrize("cls,params,message", [
    (schedules.Exponential, {"final": 1.5}, "final must be in (0, 1], got 1.5"),
    (schedules.Exponential, {"final": 0.0}, "final must be in (0, 1], got 0"),
    (schedules.Linear, {"final": 1.5}, "final must be in [0, 1], got 1.5"),
    (schedules.Polynomial, {"final": 1.5}, "final must be in [0, 1], got 1.5"),
    (schedules.Polynomial, {"power": math.inf}, "power must be in (0, inf), got inf"),
    (schedules.Polynomial, {"power": 0.0}, "power must be in (0, inf), got 0"),
    (schedules.Cosine, {"floor": 1.5}, "floor must be in [0, 1], got 1.5"),
    (schedules.WarmupStableDecay, {"final": 1.5}, "final must be in [0, 1], got 1.5"),
    (schedules.InverseSqrt, {"timescale": 0.0}, "timescale must be in (0, inf), got 0"),
    (schedules.InverseSqrt, {"timescale": math.inf}, "timescale must be in (0, inf), got inf"),
    (schedules.InverseSqrt, {"warmup": 0.0}, "timescale must be set (> 0) when warmup is 0"),
    (schedules.Plateau, {"factor": 0.0}, "factor must be in (0, 1), got 0"),
    (schedules.CosineRestarts, {"mult": math.inf}, "mult must be in [1, inf), got inf"),
    (schedules.CosineRestarts, {"floor": 1.5}, "floor must be in [0, 1], got 1.5"),
    # a number of another type is named with its type, not formatted as if it were a float
    (schedules.Cosine, {"floor": Decimal("0.5")}, "floor must be in [0, 1], got Decimal('0.5')"),
    (schedules.Step, {"milestones": ()}, "milestones must list at least one fraction in (0, 1)"),
    (schedules.OneCycle, {"peak_at": 0.0}, "peak_at must be in (0, 1), got 0"),
    (schedules.OneCycle, {"peak_at": 1.0}, "peak_at must be in (0, 1), got 1"),
    (schedules.OneCycle, {"peak_at": 0.5, "three_phase": True},
     "peak_at must be in (0, 0.5), got 0.5"),
    (schedules.OneCycle, {"div_factor": math.inf}, "div_factor must be in [1, inf), got inf"),
    (schedules.OneCycle, {"div_factor": 0.5}, "div_factor must be in [1, inf), got 0.5"),
    (schedules.OneCycle, {"final_div_factor": math.inf},
     "final_div_factor must be in [1, inf), got inf"),
    (schedules.OneCycle, {"anneal": "x"}, "anneal must be one of cos, linear, got 'x'"),
    (schedules.Step, {"gamma": 0.0}, "gamma must be in (0, 1], got 0"),
    (schedules.Step, {"milestones": (0.5, 0.5)},
     "milestones must be strictly increasing, got [0.5, 0.5]"),
    (schedules.Step, {"milestones": (0.0,)}, "milestones must be in (0, 1), got 0"),
    (schedules.Plateau, {"threshold": -0.1}, "threshold must be in [0, inf), got -0.1"),
    (schedules.Plateau, {"threshold": math.inf}, "threshold must be in [0, inf), got inf"),
    (schedules.Plateau, {"min_factor": 1.5}, "min_factor must be in [0, 1], got 1.5"),
    (schedules.Plateau, {"patience": 1.5}, "patience must be an integer >= 0 (epochs), got 1.5"),
    (schedules.Plateau, {"patience": True}, "patience must be an integer >= 0 (epochs), got True"),
])
def test_each_range_check_names_its_parameter_and_interval(cls, params, message):
    with pytest.raises(ValueError) as caught:
        cls(**params)
    assert str(caught.value) == message


@pytest.mark.parametrize("cls,params", [
    (schedules.Exponential, {"final": 1.0}), (schedules.Linear, {"final": 1.0}),
    (schedules.Polynomial, {"final": 1.0, "power": 1e-3}), (schedules.Cosine, {"floor": 1.0}),
    (schedules.WarmupStableDecay, {"final": 1.0}), (schedules.InverseSqrt, {"timescale": 1e-9}),
    (schedules.Plateau, {"threshold": 0.0, "factor": 1e-9, "patience": 0}),
])
def test_the_closed_ends_of_each_range_are_accepted(cls, params):
    cls(**params)


def test_positional_arguments_are_rejected():
    with pytest.raises(SpecError, match="must be named"):
        parse("step(0.5)")


def test_string_and_mapping_specs_are_equivalent():
    from_string = parse("step(milestones=[0.3, 0.6], gamma=0.5, warmup=0.05)")
    from_mapping = parse({"name": "step", "milestones": [0.3, 0.6], "gamma": 0.5,
                          "warmup": 0.05})
    assert from_string == from_mapping
    assert from_string.milestones == (0.3, 0.6)
    assert parse("cosine(floor=1/100)") == parse({"name": "cosine", "floor": 0.01})


@pytest.mark.parametrize("name", ALL)
def test_defaults_print_as_the_bare_name(name):
    assert str(parse(name)) == name


@pytest.mark.parametrize("spec", ["onecycle(peak_at=0.25, anneal=linear, three_phase=True)",
                                  "step(milestones=[0.3, 0.6])", "inverse_sqrt(timescale=0.1)",
                                  "wsd(warmup=0.0, decay=0.1, shape=sqrt)"])
def test_printed_spec_rebuilds_the_schedule(spec):
    schedule = parse(spec)
    assert str(schedule) == spec
    assert parse(str(schedule)) == schedule


def test_describe_lists_every_schedule_with_summary_and_defaults():
    described = schedules.describe()
    assert [name for name, _, _ in described] == ALL
    by_name = {name: (summary, defaults) for name, summary, defaults in described}
    assert by_name["step"][1] == {"warmup": 0.0, "milestones": (0.5, 0.75), "gamma": 0.1}
    assert by_name["onecycle"][1]["peak_at"] == 0.3
    assert all(summary and "\n" not in summary for summary, _ in by_name.values())
    assert "METRIC-DRIVEN" in by_name["plateau"][0]
    assert "OPTIMIZER-BASED" in by_name["schedule_free"][0]


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "schedules.png"
    assert schedules.plot(["cosine(warmup=0.05)", {"name": "step"}], path, steps=50) == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    everything = tmp_path / "all.png"
    schedules.plot([], everything, steps=50)
    assert everything.stat().st_size > path.stat().st_size
