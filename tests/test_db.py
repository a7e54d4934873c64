"""ConfigDB: load/save round trip, atomic replace, refusal of bad files."""

import json
import os

import pytest

from ovslite import db as dbmod
from ovslite.db import ConfigDB, DatabaseError, validate


def good_doc() -> dict:
    return {
        "format": 1,
        "bridges": {
            "br0": {
                "config": {"mac-aging-time": 60},
                "ports": {
                    "veth0": {"type": "system", "options": {}},
                    "tap0": {"type": "tap", "options": {}, "settings": {"mtu": 9000}},
                },
            },
            "br1": {"ports": {"veth1": {"type": "system"}}},
        },
    }


def saved(tmp_path) -> tuple[ConfigDB, bytes]:
    """A database file holding good_doc(), and its exact bytes."""
    cdb = ConfigDB(str(tmp_path / "conf.db"))
    cdb.save(good_doc())
    with open(cdb.path, "rb") as f:
        return cdb, f.read()


def contents(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def assert_one_line(exc: pytest.ExceptionInfo) -> None:
    msg = str(exc.value)
    assert msg and "\n" not in msg, repr(msg)


def assert_only_db_file(tmp_path) -> None:
    assert sorted(os.listdir(tmp_path)) == ["conf.db"], "temporary file left behind"


# -- load and save ---------------------------------------------------------------


def test_missing_file_is_empty_config(tmp_path):
    cdb = ConfigDB(str(tmp_path / "nodir" / "conf.db"))
    assert cdb.load() == {"format": 1, "bridges": {}}
    assert not (tmp_path / "nodir").exists()


def test_round_trip(tmp_path):
    cdb, raw = saved(tmp_path)
    assert cdb.load() == good_doc()
    assert ConfigDB(cdb.path).load() == good_doc()
    assert raw.endswith(b"\n") and json.loads(raw) == good_doc()
    assert_only_db_file(tmp_path)


def test_save_creates_directory(tmp_path):
    cdb = ConfigDB(str(tmp_path / "a" / "b" / "conf.db"))
    cdb.save(dbmod.empty())
    assert cdb.load() == dbmod.empty()


def test_save_replaces_file_by_rename(tmp_path):
    cdb, _ = saved(tmp_path)
    before = os.stat(cdb.path).st_ino
    doc = good_doc()
    del doc["bridges"]["br1"]
    cdb.save(doc)
    assert os.stat(cdb.path).st_ino != before  # a new file, not rewritten in place
    assert cdb.load() == doc
    assert_only_db_file(tmp_path)


def _boom(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize(
    "target",
    [(dbmod.json, "dumps"), (dbmod.os, "replace"), (dbmod.os, "fsync")],
    ids=["json.dumps", "os.replace", "os.fsync"],
)
def test_failed_save_keeps_old_file_and_no_temp(tmp_path, monkeypatch, target):
    cdb, raw = saved(tmp_path)
    monkeypatch.setattr(*target, _boom)
    with pytest.raises(OSError):
        cdb.save(dbmod.empty())
    monkeypatch.undo()
    assert contents(cdb.path) == raw
    assert_only_db_file(tmp_path)
    assert cdb.load() == good_doc()


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    cdb = ConfigDB(str(tmp_path / "conf.db"))
    monkeypatch.setattr(dbmod.os, "replace", _boom)
    with pytest.raises(OSError):
        cdb.save(good_doc())
    assert os.listdir(tmp_path) == []


# -- refusal ---------------------------------------------------------------------


def bad(mutate):
    doc = good_doc()
    mutate(doc)
    return doc


def _two_bridges(d):
    d["bridges"]["br1"]["ports"]["veth0"] = {"type": "system"}


BAD_DOCS = {
    "top-level list": [],
    "no format": {"bridges": {}},
    "format 2": {"format": 2, "bridges": {}},
    "format string": {"format": "1", "bridges": {}},
    "format true": {"format": True, "bridges": {}},
    "bridges list": {"format": 1, "bridges": []},
    "no bridges": {"format": 1},
    "bridge name 16 bytes": bad(lambda d: d["bridges"].update({"b" * 16: {"ports": {}}})),
    "bridge name slash": bad(lambda d: d["bridges"].update({"br/0": {"ports": {}}})),
    "bridge name newline": bad(lambda d: d["bridges"].update({"br\n0": {"ports": {}}})),
    "bridge not object": bad(lambda d: d["bridges"].update({"br2": "x"})),
    "ports missing": bad(lambda d: d["bridges"].update({"br2": {"config": {}}})),
    "ports list": bad(lambda d: d["bridges"].update({"br2": {"ports": []}})),
    "config list": bad(lambda d: d["bridges"]["br0"].update({"config": []})),
    "port name colon": bad(
        lambda d: d["bridges"]["br0"]["ports"].update({"eth0:1": {"type": "system"}})
    ),
    "port name empty": bad(lambda d: d["bridges"]["br0"]["ports"].update({"": {"type": "system"}})),
    "port on two bridges": bad(_two_bridges),
    "port not object": bad(lambda d: d["bridges"]["br0"]["ports"].update({"p": "system"})),
    "type missing": bad(lambda d: d["bridges"]["br0"]["ports"].update({"p": {}})),
    "type int": bad(lambda d: d["bridges"]["br0"]["ports"].update({"p": {"type": 1}})),
    "options list": bad(lambda d: d["bridges"]["br0"]["ports"]["veth0"].update({"options": []})),
}


@pytest.mark.parametrize("doc", BAD_DOCS.values(), ids=BAD_DOCS.keys())
def test_invalid_file_refused_and_untouched(tmp_path, doc):
    path = tmp_path / "conf.db"
    raw = json.dumps(doc).encode()
    path.write_bytes(raw)
    cdb = ConfigDB(str(path))
    with pytest.raises(DatabaseError) as exc:
        cdb.load()
    assert_one_line(exc)
    assert str(path) in str(exc.value)
    assert contents(path) == raw
    assert_only_db_file(tmp_path)


@pytest.mark.parametrize("doc", BAD_DOCS.values(), ids=BAD_DOCS.keys())
def test_invalid_doc_not_saved(tmp_path, doc):
    cdb, raw = saved(tmp_path)
    with pytest.raises(DatabaseError) as exc:
        cdb.save(doc)
    assert_one_line(exc)
    assert contents(cdb.path) == raw
    assert_only_db_file(tmp_path)


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b'{"format": 1, "bridges": {}', b"\xff\xfe\x00garbage", b"\x80\x81{}", b"null"],
    ids=["empty", "brace", "truncated", "binary", "bad utf-8", "null"],
)
def test_corrupt_json_refused_and_untouched(tmp_path, raw):
    path = tmp_path / "conf.db"
    path.write_bytes(raw)
    with pytest.raises(DatabaseError) as exc:
        ConfigDB(str(path)).load()
    assert_one_line(exc)
    assert "corrupt" in str(exc.value)
    assert contents(path) == raw


def test_unreadable_path_is_database_error(tmp_path):
    (tmp_path / "conf.db").mkdir()
    with pytest.raises(DatabaseError) as exc:
        ConfigDB(str(tmp_path / "conf.db")).load()
    assert_one_line(exc)


def test_validate_returns_good_doc_and_accepts_optional_fields():
    doc = good_doc()
    assert validate(doc) is doc
    assert validate(dbmod.empty()) == dbmod.empty()


def test_clone_is_deep():
    doc = good_doc()
    copy = dbmod.clone(doc)
    copy["bridges"]["br0"]["ports"].clear()
    assert doc == good_doc()


def test_static_mac_an_older_fdb_add_put_in_vlan_0_moves_to_the_ports_vlans(tmp_path):
    """Before, fdb-add without --vlan stored VLAN 0 whatever the port (an entry no
    frame used on an access port): such a database still loads, the entry where
    fdb-add puts it now, and the file is rewritten only by the next change."""
    doc = {"format": 1, "bridges": {"br0": {
        "config": {"static-macs": [
            {"mac": "02:00:00:00:00:01", "vlan": 0, "port": "acc"},
            {"mac": "02:00:00:00:00:02", "vlan": 0, "port": "nat"},
            {"mac": "02:00:00:00:00:03", "vlan": 0, "port": "trk"},
            {"mac": "02:00:00:00:00:04", "vlan": 0, "port": "acc"},
            {"mac": "02:00:00:00:00:04", "vlan": 10, "port": "acc"}]},
        "ports": {"br0": {"type": "internal", "options": {}},
                  "acc": {"type": "system", "options": {}, "settings": {"tag": 10}},
                  "nat": {"type": "system", "options": {},
                          "settings": {"vlan-mode": "native-untagged", "tag": 5,
                                       "trunks": [5, 7]}},
                  "trk": {"type": "system", "options": {}}}}}}
    path = tmp_path / "conf.db"
    raw = json.dumps(doc).encode()
    path.write_bytes(raw)
    loaded = ConfigDB(str(path)).load()
    assert loaded["bridges"]["br0"]["config"]["static-macs"] == [
        {"mac": "02:00:00:00:00:01", "vlan": 10, "port": "acc"},
        {"mac": "02:00:00:00:00:02", "vlan": 5, "port": "nat"},
        {"mac": "02:00:00:00:00:02", "vlan": 7, "port": "nat"},
        {"mac": "02:00:00:00:00:03", "vlan": 0, "port": "trk"},
        {"mac": "02:00:00:00:00:04", "vlan": 10, "port": "acc"}]
    assert path.read_bytes() == raw
