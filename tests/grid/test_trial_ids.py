"""A trial's id names what defines it, the data config and split included."""

from __future__ import annotations

from helpers import tiny

from robustlr import experiment
from robustlr.grid import data_key, expand


def ids(**data) -> list[str]:
    return [t.id for t in expand(experiment.from_mapping(tiny(data=data)))]


def test_trial_ids_differ_when_the_data_config_differs():
    """Issue 12: the same trial id appeared in three runs on three different splits."""
    base = ids()
    assert ids(split_seed=1) != base and ids(test_fraction=0.3) != base
    assert ids(split_seed=1) != ids(test_fraction=0.3)
    assert ids() == base  # the same config resumes onto the same ids


def test_where_the_files_live_is_not_part_of_the_data_key():
    here = experiment.from_mapping(tiny(data={"root": "here"}))
    there = experiment.from_mapping(tiny(data={"root": "elsewhere"}))
    assert data_key(here) == data_key(there)
