"""Switch: bridge/port commands, refusals, rollback, persistence, start-up."""

import errno
import json
import os

import pytest

from ovslite import db as dbmod
from ovslite import netdev as netdevmod
from ovslite.datapath import Datapath
from ovslite.db import ConfigDB, DatabaseError
from ovslite.netdev import Netdev, NetdevError, netdev_types, register
from ovslite.switch import Switch, SwitchError

#: port names whose open() fails, and the errno it fails with
FAIL: dict[str, int] = {}
#: every NullNetdev created, to check that refused/removed ones are closed
CREATED: list = []


class NullNetdev(Netdev):
    type = "testnull"
    options = frozenset({"peer"})

    def __init__(self, name, options=None):
        super().__init__(name, options)
        self.is_open = False
        CREATED.append(self)

    def open(self):
        if self.name in FAIL:
            raise NetdevError(f"cannot open {self.name}: no such device", FAIL[self.name])
        self.is_open = True

    def close(self):
        self.is_open = False

    fileno = staticmethod(lambda: None)
    recv_batch = staticmethod(lambda limit: [])
    send_batch = staticmethod(len)


class NullInternal(NullNetdev):
    """Stands in for the bridge-local `internal` port, which would create a TAP."""

    type = "internal"
    options = netdevmod.netdev_class("internal").options


if "testnull" not in netdev_types():
    register(NullNetdev)


@pytest.fixture
def sw(tmp_path, monkeypatch):
    monkeypatch.setitem(netdevmod._CLASSES, "internal", NullInternal)
    FAIL.clear()
    CREATED.clear()
    s = new_switch(tmp_path / "conf.db")
    yield s
    FAIL.clear()


def new_switch(path) -> Switch:
    s = Switch(ConfigDB(str(path)), Datapath(None))
    s.load()
    return s


def reload(sw: Switch) -> Switch:
    return new_switch(sw.db.path)


def stored(sw: Switch) -> bytes | None:
    if not os.path.exists(sw.db.path):
        return None
    with open(sw.db.path, "rb") as f:
        return f.read()


def refused(err: int, fn, *args, **kwargs) -> str:
    with pytest.raises(SwitchError) as exc:
        fn(*args, **kwargs)
    assert exc.value.errno == err, (errno.errorcode.get(exc.value.errno), str(exc.value))
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


def unchanged(sw: Switch, fn, *args, **kwargs):
    """Run fn and check neither the database file nor the live state moved."""
    before = (stored(sw), dbmod.clone(sw.desired), set(sw.bridges), set(sw.ports))
    result = fn(*args, **kwargs)
    assert (stored(sw), sw.desired, set(sw.bridges), set(sw.ports)) == before
    return result


def with_ports(sw: Switch, *names: str, bridge: str = "br0") -> Switch:
    sw.add_bridge(bridge, may_exist=True)
    for name in names:
        sw.add_port(bridge, name, "testnull")
    return sw


# -- bridges ---------------------------------------------------------------------


def test_add_bridge_is_live_and_persisted(sw):
    assert sw.bridges == {} and stored(sw) is None
    sw.add_bridge("br0")
    assert sw.bridge("br0").name == "br0"
    ports = {"br0": {"type": "internal", "options": {}}}
    assert ConfigDB(sw.db.path).load()["bridges"] == {"br0": {"config": {}, "ports": ports}}
    assert set(reload(sw).bridges) == {"br0"}


def test_bridge_has_local_port_that_del_port_refuses(sw):
    sw.add_bridge("br0")
    assert sw.port("br0", bridge="br0").type == "internal"
    assert sw.port("br0").up
    unchanged(sw, refused, errno.EINVAL, sw.del_port, "br0")


def test_bridge_whose_local_port_fails_is_refused(sw):
    FAIL["br0"] = errno.EPERM
    unchanged(sw, refused, errno.EPERM, sw.add_bridge, "br0")
    assert sw.bridges == {} and not any(nd.is_open for nd in CREATED)


def test_add_bridge_twice(sw):
    sw.add_bridge("br0")
    unchanged(sw, refused, errno.EEXIST, sw.add_bridge, "br0")
    unchanged(sw, sw.add_bridge, "br0", may_exist=True)


def test_del_bridge(sw):
    with_ports(sw, "p1", "p2")
    netdevs = [sw.port(n).netdev for n in ("p1", "p2")]
    sw.del_bridge("br0")
    assert sw.bridges == {} and sw.ports == {}
    assert not any(nd.is_open for nd in netdevs)
    assert reload(sw).bridges == {}


def test_del_missing_bridge(sw):
    unchanged(sw, refused, errno.ENOENT, sw.del_bridge, "nope")
    unchanged(sw, sw.del_bridge, "nope", if_exists=True)
    refused(errno.ENOENT, sw.bridge, "nope")


@pytest.mark.parametrize("name", ["x" * 16, "br/0", "br:0", "br 0", "", ".."])
def test_invalid_names_refused(sw, name):
    sw.add_bridge("br0")
    unchanged(sw, refused, errno.EINVAL, sw.add_bridge, name)
    unchanged(sw, refused, errno.EINVAL, sw.add_port, "br0", name, "testnull")


def test_bridge_and_port_names_do_not_clash(sw):
    with_ports(sw, "p1")
    sw.add_bridge("br1")
    assert "br0" in unchanged(sw, refused, errno.EEXIST, sw.add_bridge, "p1")
    unchanged(sw, refused, errno.EEXIST, sw.add_port, "br0", "br1", "testnull")
    unchanged(sw, refused, errno.EEXIST, sw.add_port, "br0", "br0", "testnull")


# -- ports -----------------------------------------------------------------------


def test_add_port_is_live_up_and_persisted(sw):
    sw.add_bridge("br0")
    sw.add_port("br0", "p1", "testnull", {"peer": "x"})
    port = sw.port("p1")
    assert port.up and port.netdev.is_open
    assert port.bridge is sw.bridge("br0") and sw.bridge("br0").ports["p1"] is port
    assert sw.port_config(port) == {"type": "testnull", "options": {"peer": "x"}}
    stored_ports = ConfigDB(sw.db.path).load()["bridges"]["br0"]["ports"]
    assert stored_ports["p1"] == {"type": "testnull", "options": {"peer": "x"}}


def test_add_port_twice_or_to_missing_bridge(sw):
    with_ports(sw, "p1")
    unchanged(sw, refused, errno.ENOENT, sw.add_port, "br9", "p2", "testnull")
    port = sw.port("p1")
    unchanged(sw, refused, errno.EEXIST, sw.add_port, "br0", "p1", "testnull")
    unchanged(sw, sw.add_port, "br0", "p1", "testnull", may_exist=True)
    assert sw.port("p1") is port


def test_port_name_used_on_another_bridge(sw):
    with_ports(sw, "p1")
    sw.add_bridge("br1")
    for again in (False, True):
        msg = unchanged(
            sw, refused, errno.EEXIST, sw.add_port, "br1", "p1", "testnull", may_exist=again
        )
        assert "br0" in msg


def test_unknown_type_and_option(sw):
    sw.add_bridge("br0")
    msg = unchanged(sw, refused, errno.EINVAL, sw.add_port, "br0", "p1", "nosuchtype")
    assert "nosuchtype" in msg
    opts = {"mtu": "9000"}
    msg = unchanged(sw, refused, errno.EINVAL, sw.add_port, "br0", "p1", "testnull", opts)
    assert "mtu" in msg


def test_del_port(sw):
    with_ports(sw, "p1", "p2")
    netdev = sw.port("p1").netdev
    sw.del_port("p1")
    assert not netdev.is_open
    assert set(sw.ports) == {"br0", "p2"} and set(sw.bridge("br0").ports) == {"br0", "p2"}
    assert set(reload(sw).ports) == {"br0", "p2"}


def test_del_port_missing_or_on_other_bridge(sw):
    with_ports(sw, "p1")
    sw.add_bridge("br1")
    unchanged(sw, refused, errno.ENOENT, sw.del_port, "p9")
    unchanged(sw, sw.del_port, "p9", if_exists=True)
    unchanged(sw, refused, errno.ENOENT, sw.del_port, "p1", bridge="br1")
    unchanged(sw, sw.del_port, "p1", bridge="br1", if_exists=True)
    refused(errno.ENOENT, sw.port, "p1", bridge="br1")
    sw.del_port("p1", bridge="br0")
    assert set(sw.ports) == {"br0", "br1"}


# -- open failures ---------------------------------------------------------------


@pytest.mark.parametrize("err, expect", [(errno.ENODEV, errno.ENODEV), (0, errno.EINVAL)])
def test_add_port_whose_open_fails_is_refused_not_persisted(sw, err, expect):
    with_ports(sw, "p1")
    p1 = sw.port("p1")
    FAIL["p2"] = err
    msg = unchanged(sw, refused, expect, sw.add_port, "br0", "p2", "testnull")
    assert "no such device" in msg
    assert set(sw.bridge("br0").ports) == {"br0", "p1"}
    assert sw.port("p1") is p1 and p1.up  # the other port was not disturbed
    assert not any(nd.is_open for nd in CREATED if nd.name == "p2")
    assert set(reload(sw).ports) == {"br0", "p1"}


def test_port_failing_at_load_is_kept_down_with_reason(sw):
    with_ports(sw, "p1", "p2")
    raw = stored(sw)
    FAIL["p2"] = errno.ENODEV
    sw2 = reload(sw)
    p2 = sw2.port("p2")
    assert not p2.up
    assert p2.reason == "cannot open p2: no such device"
    assert sw2.port("p1").up
    assert "p2" in sw2.desired["bridges"]["br0"]["ports"]
    assert stored(sw2) == raw
    # and it can still be removed, which is persisted
    sw2.del_port("p2")
    FAIL.clear()
    assert set(reload(sw2).ports) == {"br0", "p1"}


def test_failed_save_rolls_back(sw, monkeypatch):
    with_ports(sw, "p1")

    def boom(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dbmod.os, "replace", boom)
    msg = unchanged(sw, refused, errno.ENOSPC, sw.add_port, "br0", "p2", "testnull")
    assert "No space left" in msg
    unchanged(sw, refused, errno.ENOSPC, sw.add_bridge, "br1")
    unchanged(sw, refused, errno.ENOSPC, sw.del_bridge, "br0")
    assert sw.port("p1").up


# -- persistence and start-up ----------------------------------------------------


def test_configuration_survives_restart(sw):
    with_ports(sw, "p1", "p2")
    sw.add_bridge("br1")
    sw.add_port("br1", "p3", "testnull", {"peer": "p1"})
    sw.shutdown()
    assert sw.bridges == {} and not any(nd.is_open for nd in CREATED)
    sw2 = reload(sw)
    assert set(sw2.bridges) == {"br0", "br1"}
    owners = {n: p.bridge.name for n, p in sw2.ports.items()}
    assert owners == {"br0": "br0", "p1": "br0", "p2": "br0", "br1": "br1", "p3": "br1"}
    assert sw2.port("p3").netdev.config == {"peer": "p1"}
    assert all(p.up for p in sw2.ports.values())
    assert sw2.desired == sw.desired


def write_db(path, bridges: dict) -> bytes:
    raw = json.dumps({"format": 1, "bridges": bridges}).encode()
    path.write_bytes(raw)
    return raw


def test_bridge_config_applied_at_load(tmp_path):
    conf = {"mac-aging-time": 5, "mac-table-size": 7}
    write_db(tmp_path / "conf.db", {"br0": {"config": conf, "ports": {"p1": {"type": "testnull"}}}})
    sw = new_switch(tmp_path / "conf.db")
    macs = sw.bridge("br0").macs
    assert (macs.aging, macs.max_entries) == (5.0, 7)
    macs.learn(0, b"\x02" * 6, sw.port("p1"), 100)
    sw.run_timers(105)
    assert len(macs) == 1
    sw.run_timers(106)
    assert len(macs) == 0


@pytest.mark.parametrize("config", [{"mac-aging-time": "soon"}, {"mac-table-size": "big"}])
def test_bad_bridge_config_is_a_database_error(tmp_path, config):
    raw = write_db(tmp_path / "conf.db", {"br0": {"config": config, "ports": {}}})
    with pytest.raises(DatabaseError) as exc:
        new_switch(tmp_path / "conf.db")
    assert "\n" not in str(exc.value)
    assert (tmp_path / "conf.db").read_bytes() == raw
