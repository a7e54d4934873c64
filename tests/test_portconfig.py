"""ovslite.portconfig: parsing, merging and the VLAN-mode checks of port settings."""

import json

import pytest

from ovslite import db as dbmod
from ovslite import portconfig
from ovslite.portconfig import check_vlans, merge, parse, parse_trunks, vlan_mode

# -- parse: strings in, typed values out ---------------------------------------------


@pytest.mark.parametrize(
    "raw, typed",
    [
        ({"tag": "10"}, {"tag": 10}),
        ({"tag": " 7 "}, {"tag": 7}),
        ({"tag": 0}, {"tag": 0}),
        ({"tag": "4094"}, {"tag": 4094}),
        ({"trunks": "10,20-22"}, {"trunks": [10, 20, 21, 22]}),
        ({"trunks": " 30 , 5,5,,4-4 "}, {"trunks": [4, 5, 30]}),
        ({"trunks": [20, "10", 10]}, {"trunks": [10, 20]}),
        ({"trunks": "0"}, {"trunks": [0]}),
        ({"vlan-mode": "native-untagged"}, {"vlan-mode": "native-untagged"}),
        ({"admin": "down"}, {"admin": "down"}),
        ({"mtu": "1400"}, {"mtu": 1400}),
        ({"mtu": 68}, {"mtu": 68}),
        ({"storm-control": "1000"}, {"storm-control": 1000}),
        ({"tag": ""}, {"tag": None}),
        ({"learning": None}, {"learning": None}),
    ],
)
def test_parse_types_values(raw, typed):
    assert parse(raw) == typed


@pytest.mark.parametrize("text", ["on", "ON", "true", "Yes", "1", True])
@pytest.mark.parametrize("key", portconfig.BOOL_SETTINGS)
def test_bool_settings_true(key, text):
    assert parse({key: text}) == {key: True}


@pytest.mark.parametrize("text", ["off", "False", "no", "0", False])
def test_bool_settings_false(text):
    assert parse({"isolated": text}) == {"isolated": False}


def test_parse_leaves_its_input_alone():
    raw = {"trunks": "20,10", "tag": "5"}
    parse(raw)
    assert raw == {"trunks": "20,10", "tag": "5"}


def test_full_trunk_range():
    assert parse_trunks("0-4094") == list(range(4095))
    assert parse_trunks("") == [] and parse_trunks([]) == []


# -- errors: ValueError, one line, naming the setting -------------------------------


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"colour": "red"}, "unknown port setting 'colour'"),
        ({"tag": "ten"}, "tag: 'ten' is not a VLAN number"),
        ({"tag": "4095"}, "tag: VLAN 4095 is out of range (0-4094)"),
        ({"tag": -1}, "tag: VLAN -1 is out of range (0-4094)"),
        ({"tag": [10]}, "tag: [10] is not a VLAN number"),
        ({"trunks": "10-5"}, "trunks: range '10-5' runs backwards"),
        ({"trunks": "10,x"}, "trunks: 'x' is not a VLAN number"),
        ({"trunks": "10-"}, "trunks: '' is not a VLAN number"),
        ({"trunks": "1-5000"}, "trunks: VLAN 5000 is out of range (0-4094)"),
        ({"trunks": [1, 4095]}, "trunks: VLAN 4095 is out of range (0-4094)"),
        ({"vlan-mode": "hybrid"}, "vlan-mode: expected one of access, trunk, native-tagged, "
                                  "native-untagged, not 'hybrid'"),
        ({"learning": "maybe"}, "learning: expected on or off, not 'maybe'"),
        ({"flood": 2}, "flood: expected on or off, not 2"),
        ({"admin": "sideways"}, "admin: expected up or down, not 'sideways'"),
        ({"mtu": "67"}, "mtu: 67 is out of range (68-65535)"),
        ({"mtu": 65536}, "mtu: 65536 is out of range (68-65535)"),
        ({"mtu": "big"}, "mtu: 'big' is not a number"),
        ({"storm-control": "0"}, "storm-control: 0 is out of range (1-100000000)"),
        ({"storm-control": "-5"}, "storm-control: -5 is out of range (1-100000000)"),
    ],
)
def test_parse_errors_are_one_line_and_name_the_setting(raw, message):
    with pytest.raises(ValueError) as exc:
        parse(raw)
    text = str(exc.value)
    assert "\n" not in text
    assert message in text, text


def test_unknown_setting_lists_the_known_ones():
    with pytest.raises(ValueError) as exc:
        parse({"vlan": "10"})
    for key in portconfig.KNOWN:
        assert key in str(exc.value)


def test_one_bad_setting_refuses_the_whole_change():
    with pytest.raises(ValueError, match="^mtu:"):
        parse({"tag": "10", "mtu": "1"})


# -- round trips -------------------------------------------------------------------------

TYPED_EXAMPLES = [
    {"tag": 10},
    {"trunks": [10, 20, 30]},
    {"vlan-mode": "native-tagged", "tag": 5, "trunks": [6, 7]},
    {"vlan-mode": "trunk", "learning": False, "flood": False, "mcast-flood": False,
     "bcast-flood": False, "isolated": True, "admin": "down", "mtu": 9000,
     "storm-control": 100},
]


@pytest.mark.parametrize("typed", TYPED_EXAMPLES)
def test_typed_settings_parse_to_themselves(typed):
    # The database stores parse() output and checks it by parsing it again.
    assert parse(typed) == typed
    assert parse(json.loads(json.dumps(typed))) == typed


@pytest.mark.parametrize("typed", TYPED_EXAMPLES)
def test_typed_settings_are_a_valid_database_entry(typed):
    doc = {"format": 1, "bridges": {"br0": {"config": {}, "ports": {
        "p1": {"type": "system", "options": {}, "settings": typed}}}}}
    assert dbmod.validate(json.loads(json.dumps(doc))) is not None


def test_database_refuses_untyped_or_inconsistent_settings():
    def doc(settings):
        return {"format": 1, "bridges": {"br0": {"config": {}, "ports": {
            "p1": {"type": "system", "options": {}, "settings": settings}}}}}

    with pytest.raises(dbmod.DatabaseError, match="p1: 'settings' must be an object of typed"):
        dbmod.validate(doc({"tag": "10"}))
    with pytest.raises(dbmod.DatabaseError, match="p1: vlan-mode access needs a tag"):
        dbmod.validate(doc({"vlan-mode": "access"}))
    with pytest.raises(dbmod.DatabaseError, match="p1: unknown port setting"):
        dbmod.validate(doc({"nope": 1}))


def test_strings_and_typed_values_give_the_same_result():
    text = {"tag": "10", "learning": "off", "mtu": "1400", "trunks": ""}
    typed = {"tag": 10, "learning": False, "mtu": 1400, "trunks": None}
    assert parse(text) == parse(typed)


# -- merge and the VLAN combination --------------------------------------------------------


def test_merge_applies_changes_and_none_removes():
    current = {"tag": 10, "learning": False}
    merged = merge(current, parse({"learning": "", "mtu": "1400"}))
    assert merged == {"tag": 10, "mtu": 1400}
    assert current == {"tag": 10, "learning": False}  # not modified


def test_merge_from_nothing_and_back_to_nothing():
    s = merge({}, parse({"vlan-mode": "native-untagged", "tag": "10", "trunks": "20,30"}))
    assert s == {"vlan-mode": "native-untagged", "tag": 10, "trunks": [20, 30]}
    assert merge(s, parse({"vlan-mode": "", "tag": "", "trunks": ""})) == {}


def test_switching_access_to_trunk_needs_the_tag_removed():
    s = merge({}, parse({"tag": "10"}))
    with pytest.raises(ValueError, match="trunk takes no tag"):
        merge(s, parse({"vlan-mode": "trunk"}))
    assert merge(s, parse({"vlan-mode": "trunk", "tag": ""})) == {"vlan-mode": "trunk"}


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"vlan-mode": "access"}, "vlan-mode access needs a tag"),
        ({"vlan-mode": "access", "tag": 1, "trunks": [2]}, "vlan-mode access takes no trunks"),
        ({"tag": 1, "trunks": [2]}, "vlan-mode access takes no trunks"),
        ({"vlan-mode": "trunk", "tag": 3}, "vlan-mode trunk takes no tag (use native-tagged"),
        ({"vlan-mode": "native-tagged"}, "vlan-mode native-tagged needs a tag (the native VLAN)"),
        ({"vlan-mode": "native-untagged", "trunks": [4]},
         "vlan-mode native-untagged needs a tag (the native VLAN)"),
    ],
)
def test_check_vlans_errors(settings, message):
    with pytest.raises(ValueError) as exc:
        check_vlans(settings)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ValueError):
        merge({}, settings)


@pytest.mark.parametrize(
    "settings, mode",
    [
        ({}, "trunk"),
        ({"trunks": [10]}, "trunk"),
        ({"tag": 10}, "access"),
        ({"tag": 0}, "access"),
        ({"vlan-mode": "native-tagged", "tag": 10}, "native-tagged"),
        ({"vlan-mode": "access", "tag": 10, "trunks": []}, "access"),
    ],
)
def test_valid_combinations_and_their_mode(settings, mode):
    check_vlans(settings)
    assert vlan_mode(settings) == mode


def test_defaults_cover_every_flag():
    for key in portconfig.BOOL_SETTINGS:
        assert key in portconfig.DEFAULTS
    assert portconfig.DEFAULTS["admin"] == "up"
