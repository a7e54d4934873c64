"""Corrupt and hand-edited databases: one line (DatabaseError), the file untouched, never
another exception; what the commands refuse, the load refuses; leftovers of a killed
write are removed at the next start; a bad file on SIGHUP keeps what runs."""

from __future__ import annotations

import copy
import json
import math
import os
import random

import pytest
from helpers import TYPE, FakeInternal

from ovslite import netdev as netdevmod
from ovslite.datapath import Datapath
from ovslite.db import ConfigDB, DatabaseError, upgrade, validate
from ovslite.switch import Switch


def rich_doc() -> dict:
    """A valid database using every kind of field."""
    return {"format": 1, "bridges": {
        "br0": {"config": {"mac-aging-time": 60.0, "mac-table-size": 100, "forward-bpdu": True,
                           "static-macs": [{"mac": "02:00:00:00:00:01", "vlan": 10, "port": "p1"},
                                           {"mac": "02:00:00:00:00:02", "vlan": 0, "port": "p2"}]},
                "ports": {"br0": {"type": "internal", "options": {}},
                          "p1": {"type": TYPE, "options": {"color": "red"},
                                 "settings": {"tag": 10, "learning": False, "mtu": 1400}},
                          "p2": {"type": TYPE, "options": {},
                                 "settings": {"trunks": [0, 20, 30], "admin": "down"}},
                          "pa": {"type": "patch", "options": {"peer": "pb"}}}},
        "br1": {"config": {},
                "ports": {"br1": {"type": "internal", "options": {}},
                          "pb": {"type": "patch", "options": {"peer": "pa"}},
                          "p3": {"type": TYPE, "options": {},
                                 "settings": {"vlan-mode": "native-untagged", "tag": 5,
                                              "storm-control": 1000}}}}}}


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setitem(netdevmod._CLASSES, "internal", FakeInternal)


def write(tmp_path, raw) -> str:
    path = tmp_path / "conf.db"
    path.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    return str(path)


def refused(tmp_path, raw, text: str = "") -> str:
    path = write(tmp_path, raw)
    before = open(path, "rb").read()
    with pytest.raises(DatabaseError) as exc:
        ConfigDB(path).load()
    msg = str(exc.value)
    assert msg and "\n" not in msg and len(msg) < 400, msg
    assert text in msg, msg
    assert open(path, "rb").read() == before
    return msg


def edited(fn) -> str:
    doc = rich_doc()
    fn(doc)
    return json.dumps(doc)


def port(doc, name="p1", br="br0"):
    return doc["bridges"][br]["ports"][name]


def config(doc, br="br0"):
    return doc["bridges"][br]["config"]


def test_rich_doc_is_valid_and_loads(tmp_path, fakes):
    path = write(tmp_path, json.dumps(rich_doc()))
    sw = Switch(ConfigDB(path), Datapath(None))
    sw.load()
    assert sw.desired == rich_doc()
    assert sw.bridge("br0").forward_bpdu is True and sw.bridge("br1").forward_bpdu is False
    assert sw.port("pa").up and sw.port("p1").tag == 10
    sw.shutdown()


# The cases and their siblings: each was a traceback, or loaded although a
# command refuses it (and then broke show / list-br with EIO).
CASES = {
    "unknown port type": (lambda d: port(d).update(type="nosuch"), "unknown port type"),
    "netns_pid null": (lambda d: port(d, "br0").update(options={"netns_pid": None}),
                       "not a string"),
    "netns_pid empty": (lambda d: port(d, "br0").update(options={"netns_pid": ""}), None),
    "static port a list": (lambda d: config(d)["static-macs"][0].update(port=["p1"]),
                           "names no port"),
    "static mac a number": (lambda d: config(d)["static-macs"][0].update(mac=5), "MAC"),
    "static vlan bool": (lambda d: config(d)["static-macs"][0].update(vlan=True), "VLAN"),
    "static twice": (lambda d: config(d)["static-macs"].append(
        dict(config(d)["static-macs"][0])), "listed twice"),
    "static group mac": (lambda d: config(d)["static-macs"][0].update(
        mac="01:00:5e:00:00:01"), "group address"),
    "static vlan not carried": (lambda d: config(d)["static-macs"][0].update(vlan=20),
                                "does not carry VLAN 20"),
    "mtu float": (lambda d: port(d)["settings"].update(mtu=1400.0), "mtu: 1400.0 is not"),
    "tag bool": (lambda d: port(d)["settings"].update(tag=True), "VLAN"),
    "tag null": (lambda d: port(d)["settings"].update(tag=None), "no value"),
    "trunks unsorted": (lambda d: port(d, "p2")["settings"].update(trunks=[30, 20]), "typed"),
    "trunks nested": (lambda d: port(d, "p2")["settings"].update(trunks=[[20]]), "VLAN"),
    "option value int": (lambda d: port(d).update(options={"color": 5}), "not a string"),
    "peer int": (lambda d: port(d, "pa").update(options={"peer": 5}), "not a string"),
    "peer 16 bytes": (lambda d: port(d, "pa").update(options={"peer": "x" * 16}), "15 bytes"),
    "peer %": (lambda d: port(d, "pa").update(options={"peer": "tap%d"}), "'%'"),
    "peer missing": (lambda d: port(d, "pa").update(options={}), "needs a peer"),
    "port name %": (lambda d: d["bridges"]["br0"]["ports"].update({"tap%d": {"type": TYPE}}),
                    "'%'"),
    "aging bool": (lambda d: config(d).update({"mac-aging-time": True}), "not a number"),
    "size bool": (lambda d: config(d).update({"mac-table-size": True}), "not a number"),
    "size float": (lambda d: config(d).update({"mac-table-size": 100.0}), "not a number"),
    "size zero": (lambda d: config(d).update({"mac-table-size": 0}), "positive"),
    "aging string": (lambda d: config(d).update({"mac-aging-time": "60"}), "set-br stores"),
    "forward-bpdu int": (lambda d: config(d).update({"forward-bpdu": 1}), "on or off"),
    "forward-bpdu text": (lambda d: config(d).update({"forward-bpdu": "on"}), "set-br stores"),
    "unknown setting": (lambda d: config(d).update({"mac-aging": 5}), "unknown bridge setting"),
    "unknown port key": (lambda d: port(d).update(tpye="x"), "unknown key"),
    "unknown bridge key": (lambda d: d["bridges"]["br0"].update(cfg={}), "unknown key"),
    "unknown top key": (lambda d: d.update(extra=1), "unknown key"),
    "bridge is a port elsewhere": (lambda d: d["bridges"].update(
        {"p3": {"ports": {}}}), "is a port of bridge br1"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_hand_edited_database_refused_in_one_line(tmp_path, case):
    fn, text = case
    refused(tmp_path, edited(fn), text or "")


@pytest.mark.parametrize("raw, text", [
    ('{"format": 1, "bridges": {"br0": {"config": {"mac-aging-time": NaN}, "ports": {}}}}',
     "NaN is not a number JSON allows"),
    ('{"format": 1, "bridges": {"br0": {"config": {"mac-aging-time": Infinity}, "ports": {}}}}',
     "Infinity"),
    ('{"format": 1, "bridges": {"br0": {"config": {"mac-aging-time": -Infinity}, "ports": {}}}}',
     "Infinity"),
    ('{"format": 1, "bridges": {"br0": {"config": {}, "ports": {"p1": {"type": "'
     + TYPE + '", "settings": {"mtu": 1e400}}}}}}', "out of range"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"format": 1, "bridges": ' + "[" * 500 + "]" * 500 + "}", "'bridges' must be an object"),
], ids=["NaN", "Infinity", "-Infinity", "1e400", "deep nesting", "nested bridges"])
def test_json_that_is_not_json_or_too_deep_refused(tmp_path, raw, text):
    refused(tmp_path, raw, text)


# -- fuzz ------------------------------------------------------------------------------

ODD_VALUES = [None, True, False, 0, -1, 1, 4095, 2**70, 1.5, -0.0, 1e308, "", "x", "tap%d",
              "x" * 16, "02:00:00:00:00:01", [], {}, [1], [[[]]], {"a": 1}, {"peer": "p1"},
              math.nan, math.inf, "on", "10,20"]


def nodes(value, path=()):
    """Every (path, value) in a JSON document."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from nodes(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from nodes(v, (*path, i))


def mutate(doc, rng: random.Random):
    """One random edit of `doc` in place: a value swapped for another type, a key
    dropped or added or renamed, a value nested deeper, an entry doubled."""
    path, target = rng.choice(list(nodes(doc))[1:])
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    key = path[-1]
    op = rng.choice(["swap", "swap", "swap", "drop", "add", "nest", "double", "rename"])
    if op == "swap":
        parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
    elif op == "drop":
        del parent[key]
    elif op == "add" and isinstance(target, dict):
        target[rng.choice(["x", "type", "options", "settings", "tag", "peer", "vlan", "p9"])] = \
            copy.deepcopy(rng.choice(ODD_VALUES))
    elif op == "nest":
        parent[key] = rng.choice([[target], {"x": target}])
    elif op == "double" and isinstance(parent, list):
        parent.append(copy.deepcopy(target))
    elif op == "rename" and isinstance(parent, dict):
        parent[rng.choice(["p1", "p2", "br1", "tap%d", "p 1", "x" * 16, "nope"])] = \
            parent.pop(key)


@pytest.mark.parametrize("seed", range(6))
def test_mutated_databases_load_cleanly_or_are_refused(tmp_path, fakes, seed):
    """Either DatabaseError (one line, file untouched), or a configuration that a
    Switch brings up without an exception and that save() writes back identically."""
    rng = random.Random(seed)
    path = str(tmp_path / "conf.db")
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(150):
        doc = rich_doc()
        for _ in range(rng.randint(1, 3)):
            mutate(doc, rng)
        raw = json.dumps(doc).encode()  # NaN and Infinity written as JSON does not allow
        with open(path, "wb") as f:
            f.write(raw)
        db = ConfigDB(path)
        try:
            loaded = db.load()
        except DatabaseError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 400, str(exc)
            assert open(path, "rb").read() == raw
            outcomes["refused"] += 1
            continue
        outcomes["loaded"] += 1
        assert validate(copy.deepcopy(loaded)) == loaded
        sw = Switch(db, Datapath(None))
        sw.load()
        sw.shutdown()
        db.save(loaded)
        assert db.load() == loaded
        # As written, but for the entries an older fdb-add put in VLAN 0 (db.upgrade).
        expected = json.loads(raw)
        upgrade(expected)
        assert json.loads(open(path, "rb").read()) == expected
    assert outcomes["refused"] > 100 and outcomes["loaded"] > 3, outcomes


# -- leftovers and reload ----------------------------------------------------------------


def test_leftover_temp_files_of_this_database_are_removed(tmp_path):
    """What os.replace never renamed because the daemon was killed mid-write."""
    db = ConfigDB(str(tmp_path / "conf.db"))
    db.save({"format": 1, "bridges": {}})
    leftovers = [".conf.db.abcd1234", ".conf.db.zz_9x0y1"]
    others = [".conf.db.short", ".other.db.abcd1234", "conf.db.abcd1234", ".conf.db.abcd1234x",
              "notes.txt"]
    for name in leftovers + others:
        (tmp_path / name).write_text("{")
    (tmp_path / ".conf.db.dir12345").mkdir()
    assert sorted(db.remove_leftovers()) == sorted(leftovers)
    assert sorted(os.listdir(tmp_path)) == sorted(["conf.db", ".conf.db.dir12345", *others])
    assert db.load() == {"format": 1, "bridges": {}}
    assert ConfigDB(str(tmp_path / "nodir" / "conf.db")).remove_leftovers() == []


def test_temp_files_are_named_after_the_database(tmp_path, monkeypatch):
    import tempfile

    seen = []
    real = tempfile.mkstemp

    def spy(*args, **kwargs):
        seen.append(kwargs["prefix"])
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", spy)
    ConfigDB(str(tmp_path / "other.db")).save({"format": 1, "bridges": {}})
    assert seen == [".other.db."]


def test_reload_of_a_bad_database_keeps_the_running_configuration(tmp_path, fakes):
    path = write(tmp_path, json.dumps(rich_doc()))
    sw = Switch(ConfigDB(path), Datapath(None))
    sw.load()
    before = (copy.deepcopy(sw.desired), set(sw.ports))
    write(tmp_path, edited(lambda d: port(d, "br0").update(options={"netns_pid": None})))
    with pytest.raises(DatabaseError):
        sw.reload()
    assert (sw.desired, set(sw.ports)) == before
    doc = rich_doc()
    del doc["bridges"]["br1"]
    write(tmp_path, json.dumps(doc))
    sw.reload()
    assert set(sw.bridges) == {"br0"}
    sw.shutdown()
