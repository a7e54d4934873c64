"""Static MAC entries (fdb-add) and what refers to ports: VLANs as `bridge fdb add`,
deletes that take their entries along, the learning limit that ignores them."""

import errno

import pytest
from test_switch import refused, reload, stored, unchanged
from test_switch import sw as sw  # noqa: F401  (the fixture)

from ovslite.db import ConfigDB
from ovslite.mactable import MacTable
from ovslite.vnet import parse_mac

A = parse_mac("02:00:00:00:00:01")
B = parse_mac("02:00:00:00:00:02")


def statics(sw, bridge="br0") -> dict:
    """The live static entries: {(vlan, 'mac'): port name}."""
    return {(e.vlan, e.mac.hex(":")): e.port.name
            for e in sw.bridge(bridge).macs.entries.values() if e.static}


def stored_statics(sw, bridge="br0") -> list:
    return ConfigDB(sw.db.path).load()["bridges"][bridge]["config"].get("static-macs", [])


@pytest.fixture
def patched(sw):
    """br0 with a patch port p1 (peer p2), as in the issue; `patch` is pure, no kernel."""
    sw.add_bridge("br0")
    sw.add_port("br0", "p1", "patch", {"peer": "p2"})
    return sw


def test_del_port_takes_its_static_macs_and_later_changes_work(patched):
    """The issue's sequence: before, every later write failed with 'internal error ...
    static-macs: entry names no port of the bridge' and the file kept p1."""
    sw = patched
    sw.fdb_add("br0", A, "p1")
    assert statics(sw) == {(0, "02:00:00:00:00:01"): "p1"}
    sw.del_port("p1")
    assert statics(sw) == {} and stored_statics(sw) == []
    sw.add_bridge("br1")
    sw.set_bridge("br0", {"mac-aging-time": "60"})
    doc = ConfigDB(sw.db.path).load()
    assert set(doc["bridges"]) == {"br0", "br1"}
    assert "p1" not in doc["bridges"]["br0"]["ports"]
    assert set(reload(sw).ports) == {"br0", "br1"}


def test_del_port_keeps_other_ports_entries_and_del_br_takes_all(sw):
    sw.add_bridge("br0")
    for p in ("p1", "p2"):
        sw.add_port("br0", p, "testnull")
    sw.fdb_add("br0", A, "p1")
    sw.fdb_add("br0", B, "p2")
    sw.del_port("p1")
    assert statics(sw) == {(0, "02:00:00:00:00:02"): "p2"}
    assert [e["port"] for e in stored_statics(sw)] == ["p2"]
    sw.add_bridge("br1")
    sw.del_bridge("br0")
    assert set(ConfigDB(sw.db.path).load()["bridges"]) == {"br1"}
    sw.add_bridge("br0")  # a new bridge of the same name starts without entries
    assert statics(sw) == {}


def test_patch_peer_naming_a_deleted_port_is_fine(patched):
    sw = patched
    sw.add_bridge("br1")
    sw.add_port("br1", "p2", "patch", {"peer": "p1"})
    assert sw.port("p1").up
    sw.del_port("p2")
    assert not sw.port("p1").up  # shows down; the configuration stays valid
    sw.add_bridge("br2")


@pytest.mark.parametrize("settings, vlans", [
    ({"tag": "10"}, [10]),                                  # access: its VLAN
    ({"trunks": "10,20"}, [10, 20]),                        # trunk: each VLAN it lists
    ({"trunks": "0,30"}, [0, 30]),
    ({}, [0]),                                              # trunk of all VLANs: untagged
    ({"vlan-mode": "native-untagged", "tag": "5"}, [5]),    # native, all VLANs: native
    ({"vlan-mode": "native-tagged", "tag": "5", "trunks": "7"}, [5, 7]),
])
def test_fdb_add_without_vlan_uses_the_vlans_the_port_carries(sw, settings, vlans):
    """Before: always VLAN 0, where an access port's entry is never used."""
    sw.add_bridge("br0")
    sw.add_port("br0", "p1", "testnull", settings=settings)
    sw.fdb_add("br0", A, "p1")
    assert statics(sw) == {(v, "02:00:00:00:00:01"): "p1" for v in vlans}
    assert sorted(e["vlan"] for e in stored_statics(sw)) == vlans


def test_fdb_add_of_a_vlan_the_port_does_not_carry_is_refused(sw):
    """Before: accepted, and the entry sat in VLAN 20 of an access port of VLAN 10."""
    sw.add_bridge("br0")
    sw.add_port("br0", "p1", "testnull", settings={"tag": "10"})
    msg = unchanged(sw, refused, errno.EINVAL, sw.fdb_add, "br0", A, "p1", 20)
    assert msg == "port p1 does not carry VLAN 20"
    sw.fdb_add("br0", A, "p1", 10)
    assert statics(sw) == {(10, "02:00:00:00:00:01"): "p1"}


@pytest.mark.parametrize("mac", ["01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00"])
def test_fdb_add_refuses_what_is_not_a_station_address(sw, mac):
    sw.add_bridge("br0")
    sw.add_port("br0", "p1", "testnull")
    unchanged(sw, refused, errno.EINVAL, sw.fdb_add, "br0", parse_mac(mac), "p1")


def test_static_entry_of_an_access_port_steers_its_vlans_frames(sw):
    """The user-visible part: a frame to the MAC from VLAN 10 goes to p1 only."""
    from ovslite.vnet import VNET_HDR_LEN

    sw.add_bridge("br0")
    for p in ("p1", "p2", "p3"):
        sw.add_port("br0", p, "testnull", settings={"tag": "10"})
    sw.fdb_add("br0", A, "p1")
    br = sw.bridge("br0")
    frame = bytes(VNET_HDR_LEN) + A + B + b"\x08\x00" + bytes(46)
    out = br.forward(sw.port("p2"), [frame], 0.0)
    assert [p.name for p in out] == ["p1"]


def test_set_port_that_would_strand_a_static_entry_is_refused_naming_it(sw):
    sw.add_bridge("br0")
    sw.add_port("br0", "p1", "testnull", settings={"tag": "10"})
    sw.fdb_add("br0", A, "p1")
    msg = unchanged(sw, refused, errno.EINVAL, sw.set_port, "p1", {"tag": "20"})
    assert "VLAN 10" in msg and "02:00:00:00:00:01" in msg and "fdb-del" in msg
    sw.set_port("p1", {"learning": "off"})  # changes that keep VLAN 10 are fine
    sw.fdb_del("br0", A)
    sw.set_port("p1", {"tag": "20"})
    assert sw.port("p1").tag == 20


def test_fdb_del_without_vlan_removes_every_vlans_entry(sw):
    sw.add_bridge("br0")
    sw.add_port("br0", "p1", "testnull", settings={"trunks": "10,20"})
    sw.fdb_add("br0", A, "p1")
    sw.fdb_del("br0", A, 10)
    assert statics(sw) == {(20, "02:00:00:00:00:01"): "p1"}
    unchanged(sw, refused, errno.ENOENT, sw.fdb_del, "br0", A, 10)
    sw.fdb_del("br0", A)
    assert statics(sw) == {} and stored_statics(sw) == []
    assert "any VLAN" in unchanged(sw, refused, errno.ENOENT, sw.fdb_del, "br0", A)


def test_statics_do_not_use_up_the_learning_limit(sw):
    """mac-table-size bounds learning (the kernel's fdb_max_learned): before, a
    bridge whose table size its static entries filled learned nothing."""
    sw.add_bridge("br0")
    sw.add_port("br0", "p1", "testnull")
    sw.add_port("br0", "p2", "testnull")
    sw.set_bridge("br0", {"mac-table-size": "2"})
    for i in range(4):
        sw.fdb_add("br0", bytes([2, 0, 0, 0, 9, i]), "p1")
    macs: MacTable = sw.bridge("br0").macs
    macs.learn(0, A, sw.port("p2"), 1.0)
    macs.learn(0, B, sw.port("p2"), 1.0)
    assert macs.lookup(0, A, 1.0) is sw.port("p2") and macs.lookup(0, B, 1.0) is sw.port("p2")
    assert len(macs) == 6


def test_database_with_a_static_entry_in_a_vlan_its_port_lacks_is_refused(tmp_path):
    from test_switch import write_db

    from ovslite.db import DatabaseError

    path = tmp_path / "conf.db"
    raw = write_db(path, {"br0": {"config": {"static-macs": [
        {"mac": "02:00:00:00:00:01", "vlan": 20, "port": "p1"}]},
        "ports": {"p1": {"type": "testnull", "settings": {"tag": 10}}}}})
    # (VLAN 0 there is what older fdb-adds stored: db.upgrade moves it, see test_db.py)
    with pytest.raises(DatabaseError, match="port p1 does not carry VLAN 20"):
        ConfigDB(str(path)).load()
    assert path.read_bytes() == raw


def test_stored_entries_come_back_after_a_restart(sw):
    sw.add_bridge("br0")
    sw.add_port("br0", "p1", "testnull", settings={"trunks": "10,20"})
    sw.fdb_add("br0", A, "p1")
    before = stored(sw)
    sw.shutdown()
    sw2 = reload(sw)
    assert statics(sw2) == {(10, "02:00:00:00:00:01"): "p1", (20, "02:00:00:00:00:01"): "p1"}
    assert stored(sw2) == before
