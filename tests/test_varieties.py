import pytest

from backend import varieties
from backend.errors import UnknownVarietyError, UserError


def test_registry_has_msa_and_the_25_madar_cities():
    assert len(varieties.CITY_CODES) == 25
    assert len(set(varieties.CITY_CODES)) == 25
    assert varieties.TARGET_CODES[0] == "MSA"
    assert {v.region for v in varieties.CITIES} == {"Nile Valley", "Levant", "Gulf", "Iraq", "Yemen", "Maghreb"}


@pytest.mark.parametrize("key", ["CAI", "cai", "Cairo", "cAiRo", "القاهرة"])
def test_lookup_by_code_or_name_ignores_case(key):
    assert varieties.get(key).code == "CAI"


def test_unknown_name_lists_the_valid_codes():
    with pytest.raises(UnknownVarietyError) as e:
        varieties.get("Atlantis")
    assert isinstance(e.value, UserError)
    assert "Atlantis" in str(e.value) and "CAI" in str(e.value) and "MSA" in str(e.value)


def test_groups_map_onto_registered_cities():
    for g in varieties.GROUPS:
        assert g.members, g.code
        for m in g.members:
            assert varieties.get(m).kind == "city"
    covered = {m for g in varieties.GROUPS for m in g.members}
    assert covered == set(varieties.CITY_CODES)
    assert varieties.group_of("Beirut").code == "LEV"
    assert varieties.get("Egyptian").code == "EGY"


def test_parse_list_keeps_order_and_drops_repeats():
    assert varieties.parse_list("cai, Beirut,RIY,CAI") == ["CAI", "BEI", "RIY"]
    with pytest.raises(UnknownVarietyError):
        varieties.parse_list("CAI,XYZ")


def test_presets_are_valid_codes():
    for codes in varieties.PRESETS.values():
        for c in codes:
            varieties.get(c)
