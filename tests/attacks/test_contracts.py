"""The adversarial side's plug-in tables: each class is in its kind's table under its spec
name (registered by the decorator on its definition), and a name cannot be taken twice."""

import pytest

from robustlr.attacks import EVASION_ATTACKS, PGD, AutoAttack
from robustlr.attacks.contracts import AttackTable
from robustlr.attacks.filters import FILTERS, Spectral
from robustlr.attacks.poisoning import POISONS, BadNets, NoPoison


def test_each_class_is_registered_under_its_spec_name_where_it_is_defined():
    assert EVASION_ATTACKS["pgd"] is PGD and EVASION_ATTACKS["autoattack"] is AutoAttack
    assert POISONS["badnets"] is BadNets and POISONS["none"] is NoPoison
    assert FILTERS["spectral"] is Spectral
    assert len(EVASION_ATTACKS) == 8 and len(POISONS) == 5 and len(FILTERS) == 6


def test_a_name_registered_twice_is_refused():
    table = AttackTable("attack")
    table.register("mine")(PGD)
    with pytest.raises(ValueError, match="attack 'mine' is registered twice"):
        table.register("mine")(AutoAttack)
    assert table == {"mine": PGD}
