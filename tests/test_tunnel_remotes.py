"""Ports with several remotes as the user sees them without sockets: fdb-add
--remote (refusals, the database, load-time checks, steering), fdb-show's
remote column, and dump-ports' per-remote counters."""

import errno
import json
import socket
import time

import pytest
from test_switch import refused, stored, unchanged, write_db
from test_switch import sw as sw  # noqa: F401  (the fixture)

from ovslite import netdev as netdevmod
from ovslite.control.handlers import Handlers
from ovslite.control.messages import FDB_ENTRY, pack_fdb_remote, unpack_fdb_entries
from ovslite.db import ConfigDB, DatabaseError
from ovslite.netdev.vxlan import VxlanNetdev
from ovslite.tunnel.endpoint import Endpoint
from ovslite.tunnel.options import parse_options
from ovslite.tunnel.remotes import RemoteMap
from ovslite.vnet import ZERO_HDR, parse_mac

B, C = "192.168.50.2", "192.168.50.3"
X = parse_mac("02:00:00:00:00:09")
SRC = parse_mac("02:00:00:00:00:01")


class FakeSocket:
    def __init__(self):
        self.sent = []

    def fileno(self):
        return -1

    def sendto(self, data, destination):
        self.sent.append(destination[0])


class SocketlessVxlan(VxlanNetdev):
    """vxlan as the switch drives it, with the sockets and the route lookup replaced."""

    route_lookup = staticmethod(lambda remote: 1500)

    def open(self, inherited=None):
        tunnel = self.tunnel = parse_options("vxlan", self.config)
        self.remotes = [str(r) for r in tunnel.remote_ips]
        self.destinations = [(r, 4789) for r in self.remotes]
        self.destination_of = {d[0]: [d] for d in self.destinations}
        self.remote_map = RemoteMap(self.remotes) if len(self.remotes) > 1 else None
        self.header = self.make_header(tunnel)
        self.endpoint = Endpoint("vxlan", socket.AF_INET, 4789, sock=FakeSocket())
        self.endpoint.datapath = "not watched"  # the unit tests' Datapath has no loop
        self.send_socks = [FakeSocket()]
        self._check_routes()

    def close(self):
        self.endpoint = None
        self.send_socks = []


@pytest.fixture
def tun(sw, monkeypatch):
    monkeypatch.setitem(netdevmod._CLASSES, "vxlan", SocketlessVxlan)
    sw.add_bridge("br0")
    sw.add_port("br0", "t0", "vxlan", {"remote_ip": f"{B},{C}", "key": "100"})
    sw.add_port("br0", "p1", "testnull")
    return sw


def frame_to(mac: bytes) -> bytes:
    return ZERO_HDR + mac + SRC + b"\x08\x06" + bytes(28)


def test_fdb_add_remote_pins_known_unicast_to_that_remote_over_what_was_learned(tun):
    netdev = tun.port("t0").netdev
    netdev.learn(bytes(6) + X + b"\x08\x06", B, time.monotonic())  # learned behind B
    tun.fdb_add("br0", X, "t0", remote=C)
    sock = netdev.send_socks[0]
    assert netdev.send_batch([frame_to(X)]) == 1
    assert sock.sent == [C]
    netdev.learn(bytes(6) + X + b"\x08\x06", B, time.monotonic())  # learning does not move a pin
    netdev.send_batch([frame_to(X)])
    assert sock.sent == [C, C]
    assert ConfigDB(tun.db.path).load()["bridges"]["br0"]["config"]["static-macs"] == [
        {"mac": "02:00:00:00:00:09", "vlan": 0, "port": "t0", "remote": C}]


def test_fdb_del_unpins(tun):
    netdev = tun.port("t0").netdev
    tun.fdb_add("br0", X, "t0", remote=C)
    tun.fdb_del("br0", X)
    netdev.send_batch([frame_to(X)])
    assert netdev.send_socks[0].sent == [B, C]  # unknown again: every remote


@pytest.mark.parametrize(("port", "remote", "needle"), [
    ("p1", B, "--remote: port p1 is not a tunnel port"),
    ("t0", "192.168.50.9", "--remote: 192.168.50.9 is not a remote of port t0 "
                           f"(remote_ip={B},{C})"),
    ("t0", "abc", "--remote: 'abc' is not an IP address"),
])
def test_fdb_add_remote_refusals_are_one_line_and_change_nothing(tun, port, remote, needle):
    msg = unchanged(tun, refused, errno.EINVAL, tun.fdb_add, "br0", X, port, None, remote)
    assert needle in msg, msg


def test_a_mac_pinned_to_two_remotes_of_one_port_is_refused(tun):
    tun.set_port("t0", {"trunks": "10,20"})
    tun.fdb_add("br0", X, "t0", 10, B)
    msg = unchanged(tun, refused, errno.EINVAL, tun.fdb_add, "br0", X, "t0", 20, C)
    assert f"pinned to both {B} and {C} on port t0" in msg


def test_a_pin_survives_a_restart(tun):
    tun.fdb_add("br0", X, "t0", remote=C)
    before = stored(tun)
    tun.shutdown()
    from test_switch import reload
    again = reload(tun)
    assert again.port("t0").netdev.remote_map.pinned == {X: C}
    assert stored(again) == before


@pytest.mark.parametrize(("entry", "needle"), [
    ({"port": "p1", "remote": B}, "port p1 is not a tunnel port"),
    ({"port": "t0", "remote": "192.168.50.9"}, "192.168.50.9 is not a remote of port t0"),
    ({"port": "t0", "remote": 3}, "3 is not an address as fdb-add stores it"),
    ({"port": "t0", "remote": "192.168.050.2"}, "is not an IP address"),
])
def test_database_with_a_bad_pin_is_refused_at_load(tmp_path, monkeypatch, entry, needle):
    monkeypatch.setitem(netdevmod._CLASSES, "vxlan", SocketlessVxlan)
    path = tmp_path / "conf.db"
    raw = write_db(path, {"br0": {"config": {"static-macs": [
        {"mac": "02:00:00:00:00:09", "vlan": 0, **entry}]},
        "ports": {"p1": {"type": "testnull"},
                  "t0": {"type": "vxlan", "options": {"remote_ip": f"{B},{C}"}}}}})
    with pytest.raises(DatabaseError, match=needle):
        ConfigDB(str(path)).load()
    assert path.read_bytes() == raw


def test_fdb_show_gives_the_remote_of_learned_and_pinned_macs(tun):
    br = tun.bridge("br0")
    netdev = tun.port("t0").netdev
    y = parse_mac("02:00:00:00:00:0a")
    br.macs.learn(0, y, tun.port("t0"), tun.datapath.clock())
    netdev.learn(bytes(6) + y + b"\x08\x06", B, time.monotonic())
    tun.fdb_add("br0", X, "t0", remote=C)
    handlers = Handlers(tun)

    class Req:
        values = {"bridge": "br0"}

    plain = {e["mac"]: e["remote"] for e in handlers.get_fdb(Req)}
    assert plain == {"02:00:00:00:00:09": C, "02:00:00:00:00:0a": B}
    Req.values = {"bridge": "br0", "packed": True}
    (msg,) = handlers.get_fdb(Req)
    entries = unpack_fdb_entries(msg["fdb_entries"], msg["fdb_remotes"])
    assert {e["mac"]: e.get("remote") for e in entries} == plain


def test_packed_remotes_round_trip_ipv6_and_refuse_a_bad_index():
    entry = FDB_ENTRY.pack(1, 0, 0, 0, X, b"t0")
    (e,) = unpack_fdb_entries(entry, pack_fdb_remote(0, "fd00::2"))
    assert e["remote"] == "fd00::2"
    from ovslite.control.messages import ProtocolError
    with pytest.raises(ProtocolError):
        unpack_fdb_entries(entry, pack_fdb_remote(1, B))


def test_per_remote_counters_count_what_each_remote_sent_and_was_sent(tun):
    netdev = tun.port("t0").netdev
    inner = bytes(6) + X + b"\x08\x06" + bytes(46)
    netdev.learn(inner, B, time.monotonic())
    netdev.learn(inner, B, time.monotonic())
    flood = ZERO_HDR + b"\xff" * 6 + SRC + b"\x08\x06" + bytes(46)
    netdev.send_batch([frame_to(X), flood])  # X behind B now; the broadcast to both
    netdev.describe_output(frame_to(X))  # trace: counts nothing
    assert netdev.remote_stats() == {
        B: {"rx_packets": 2, "rx_bytes": 120, "tx_packets": 2, "tx_bytes": 42 + 60},
        C: {"rx_packets": 0, "rx_bytes": 0, "tx_packets": 1, "tx_bytes": 60}}

    class Req:
        values = {"port": "t0"}

    (detail,) = Handlers(tun).get_port(Req)
    assert [r["remote"] for r in detail["remotes"]] == [B, C]
    assert detail["remotes"][0]["stats"]["tx_packets"] == 2


def test_single_remote_port_has_no_per_remote_counters(sw, monkeypatch):
    monkeypatch.setitem(netdevmod._CLASSES, "vxlan", SocketlessVxlan)
    sw.add_bridge("br0")
    sw.add_port("br0", "t0", "vxlan", {"remote_ip": B})

    class Req:
        values = {"port": "t0"}

    (detail,) = Handlers(sw).get_port(Req)
    assert detail["remotes"] is None
    json.dumps(detail)


def test_fdb_show_and_dump_ports_print_the_remote_beside_the_port():
    from ovslite_ctl.cli import render_dump_ports
    from ovslite_ctl.fdb import render_fdb

    lines = render_fdb([
        {"port": "p1", "vlan": 0, "mac": "02:00:00:00:00:01", "age": 3, "static": False},
        {"port": "t0", "vlan": 0, "mac": "02:00:00:00:00:09", "age": 0, "static": True,
         "remote": C}])
    assert lines[2].split() == ["t0", f"({C})", "0", "02:00:00:00:00:09", "static"]
    stats = {k: 0 for k in ("rx_packets", "rx_bytes", "rx_dropped", "rx_errors", "tx_packets",
                            "tx_bytes", "tx_dropped", "tx_errors")}
    port = {"number": 2, "name": "t0", "stats": {**stats, "drops": {}},
            "remotes": [{"remote": B, "rx_packets": 2, "rx_bytes": 120, "tx_packets": 1,
                         "tx_bytes": 60}]}
    assert render_dump_ports("br0", [port])[-1].strip() == (
        f"remote {B}: rx pkts=2, bytes=120; tx pkts=1, bytes=60")


def test_remote_map_is_bounded_and_pins_never_age():
    from ovslite.tunnel import remotes

    table = RemoteMap([B, C])
    for i in range(remotes.MAX_MACS + 5):
        table.learn(i.to_bytes(6, "big"), B, 60, 0.0)
    assert len(table.learned) == remotes.MAX_MACS
    assert table.remote_of((0).to_bytes(6, "big"), 0.0) is None  # the oldest went first
    table.pin({X: C, SRC: "192.168.50.9"})  # not a remote of the port: ignored
    assert table.pinned == {X: C}
    assert table.remote_of(X, 10_000.0) == C
