"""ControlServer on a real Unix socket, driven through the client, with a real Switch
whose ports are an in-test provider (no kernel devices, no root)."""

from __future__ import annotations

import errno
import os
import re
import socket
import stat
import struct
import threading
import time
from pathlib import Path

import pytest
from helpers import TYPE, Daemon

from ovslite.control import messages as m
from ovslite.control.connection import QUEUE_BYTES
from ovslite.control.messages import Cmd
from ovslite.control.server import ControlServer, ControlSocketError
from ovslite.db import ConfigDB
from ovslite_ctl.client import Client, ConnectError, ControlError, DaemonError


@pytest.fixture
def c(daemon):
    with daemon.client() as client:
        yield client


def daemon_error(err, fn, *args, **kwargs) -> str:
    with pytest.raises(DaemonError) as exc:
        fn(*args, **kwargs)
    assert exc.value.errno == err, (errno.errorcode.get(exc.value.errno), str(exc.value))
    assert str(exc.value) and "\n" not in str(exc.value)
    return str(exc.value)


# -- commands ----------------------------------------------------------------------


def test_socket_created_with_parent_and_mode(daemon):
    st = os.stat(daemon.path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660


def test_version(c):
    assert c.version() == {"version": "0.1.0", "protocol": m.OVSLITE_PROTOCOL_VERSION}


def test_bridges_add_list_delete(daemon, c):
    assert c.bridges() == []
    c.add_bridge("br1")
    c.add_bridge("br0")
    assert [b["name"] for b in c.bridges()] == ["br0", "br1"]
    (br0,) = c.bridges("br0")
    assert [(p["name"], p["type"], p["up"]) for p in br0["ports"]] == [("br0", "internal", True)]
    assert set(ConfigDB(daemon.switch.db.path).load()["bridges"]) == {"br0", "br1"}
    c.del_bridge("br1")
    assert [b["name"] for b in c.bridges()] == ["br0"]


def test_bridge_refusals(c):
    c.add_bridge("br0")
    assert daemon_error(errno.EEXIST, c.add_bridge, "br0") == "bridge br0 already exists"
    c.add_bridge("br0", may_exist=True)
    assert "no bridge named nope" in daemon_error(errno.ENOENT, c.del_bridge, "nope")
    c.del_bridge("nope", if_exists=True)
    daemon_error(errno.ENOENT, c.bridges, "nope")
    assert "longer than 15 bytes" in daemon_error(errno.EINVAL, c.add_bridge, "b" * 16)
    daemon_error(errno.EINVAL, c.add_bridge, "a/b")


def test_ports_add_show_delete(daemon, c):
    c.add_bridge("br0")
    c.add_port("br0", "p1", TYPE, {"peer": "x"})
    c.add_port("br0", "p2", TYPE)
    (br,) = c.bridges()
    assert [(p["name"], p["number"], p["options"]) for p in br["ports"]] == [
        ("br0", 1, {}), ("p1", 2, {"peer": "x"}), ("p2", 3, {})]
    ports = {p["name"]: p for p in c.ports("br0")}
    assert ports["p1"]["info"] == {"kind": "fake", "peer": "x"}
    assert ports["p1"]["type"] == TYPE and ports["p1"]["up"] and ports["p1"]["bridge"] == "br0"
    assert [p["name"] for p in c.ports("br0", "p2")] == ["p2"]
    assert [p["name"] for p in c.ports()] == ["br0", "p1", "p2"]
    c.del_port("p1", "br0")
    c.del_port("p2")
    assert [p["name"] for p in c.ports("br0")] == ["br0"]
    stored = ConfigDB(daemon.switch.db.path).load()
    assert set(stored["bridges"]["br0"]["ports"]) == {"br0"}


def test_port_refusals(c):
    c.add_bridge("br0")
    c.add_bridge("br1")
    c.add_port("br0", "p1", TYPE)
    assert "already exists" in daemon_error(errno.EEXIST, c.add_port, "br0", "p1", TYPE)
    c.add_port("br0", "p1", TYPE, may_exist=True)
    daemon_error(errno.EEXIST, c.add_port, "br1", "p1", TYPE, may_exist=True)
    daemon_error(errno.ENOENT, c.add_port, "br9", "p2", TYPE)
    assert "unknown port type" in daemon_error(errno.EINVAL, c.add_port, "br0", "p2", "nosuch")
    assert "no option 'bogus'" in daemon_error(errno.EINVAL, c.add_port, "br0", "p2", TYPE,
                                               {"bogus": "1"})
    assert "does not exist" in daemon_error(errno.ENODEV, c.add_port, "br0", "missing0", TYPE)
    daemon_error(errno.ENOENT, c.del_port, "p1", "br1")
    daemon_error(errno.ENOENT, c.del_port, "p9")
    c.del_port("p9", if_exists=True)
    daemon_error(errno.EINVAL, c.del_port, "br0", "br0")  # the local port
    daemon_error(errno.ENOENT, c.ports, "br0", "p9")
    assert [p["name"] for p in c.ports("br0")] == ["br0", "p1"]


def test_port_stats_and_state(daemon, c):
    c.add_bridge("br0")
    c.add_port("br0", "p1", TYPE)

    def poke():
        port = daemon.switch.port("p1")
        port.stats.rx_packets, port.stats.rx_bytes, port.stats.tx_bytes = 10, 2**40, 77
        port.stats.drop("runt", 2)
        port.stats.drop("tx-failed", 3, tx=True)
        # what the provider dropped before the bridge saw it counts with the rx drops
        port.netdev.drops = lambda: {"stale": 5, "truncated": 0, "runt": 1}
        daemon.switch.set_state(port, False, "no carrier")

    daemon.lt.call(poke)
    p1 = c.ports("br0", "p1")[0]
    assert p1["stats"] == {"rx_packets": 10, "rx_bytes": 2**40, "rx_dropped": 8, "rx_errors": 0,
                           "tx_packets": 0, "tx_bytes": 77, "tx_dropped": 3, "tx_errors": 0,
                           "drops": {"runt": 3, "tx-failed": 3, "stale": 5}}
    assert (p1["up"], p1["reason"]) == (False, "no carrier")
    assert [(p["up"], p["reason"]) for p in c.bridges()[0]["ports"]][1] == (False, "no carrier")


def test_fdb(daemon, c):
    c.add_bridge("br0")
    c.add_port("br0", "p1", TYPE)
    c.add_port("br0", "p2", TYPE)

    def learn():
        macs = daemon.switch.bridge("br0").macs
        p1, p2 = daemon.switch.port("p1"), daemon.switch.port("p2")
        macs.learn(0, bytes.fromhex("505400000002"), p2, 990.0)
        macs.learn(0, bytes.fromhex("505400000001"), p1, 997.5)
        macs.learn(5, bytes.fromhex("505400000003"), p1, 1000.0 - macs.aging - 1)  # aged out
        macs.add_static(0, bytes.fromhex("0200000000ff"), p2, 100.0)

    daemon.lt.call(learn)
    assert c.fdb("br0") == [
        {"port": "p1", "port_no": 2, "vlan": 0, "mac": "50:54:00:00:00:01", "age": 2, "static": False},
        {"port": "p2", "port_no": 3, "vlan": 0, "mac": "02:00:00:00:00:ff", "age": 900, "static": True},
        {"port": "p2", "port_no": 3, "vlan": 0, "mac": "50:54:00:00:00:02", "age": 10, "static": False},
    ]
    daemon_error(errno.ENOENT, c.fdb, "nope")


def test_set_port_settings_show_in_dumps(daemon, c):
    c.add_bridge("br0")
    c.add_port("br0", "p1", TYPE)
    c.set_port("p1", {"tag": "20", "vlan-mode": "native-untagged", "trunks": "10,30-32,11",
                      "learning": "off", "flood": "on", "isolated": "yes", "mtu": "1400",
                      "storm-control": "1000"})
    want = {"tag": "20", "trunks": "10-11,30-32", "vlan-mode": "native-untagged",
            "learning": "off", "isolated": "on", "mtu": "1400", "storm-control": "1000"}
    assert c.ports("br0", "p1")[0]["settings"] == want  # flood=on is the default: not shown
    assert c.bridges()[0]["ports"][1]["settings"] == want
    assert c.bridges()[0]["ports"][0]["settings"] == {}
    port = daemon.switch.port("p1")
    assert (port.tag, port.learning, port.isolated, port.max_len is not None) == (20, False, True, True)
    c.set_port("p1", {"admin": "down", "mtu": ""}, bridge="br0")
    p1 = c.ports("br0", "p1")[0]
    assert (p1["up"], p1["reason"]) == (False, "administratively down")
    assert "mtu" not in p1["settings"] and p1["settings"]["admin"] == "down"
    stored = ConfigDB(daemon.switch.db.path).load()["bridges"]["br0"]["ports"]["p1"]["settings"]
    assert stored["trunks"] == [10, 11, 30, 31, 32] and stored["admin"] == "down"


def test_set_port_refusals(c):
    c.add_bridge("br0")
    c.add_bridge("br1")
    c.add_port("br0", "p1", TYPE)
    assert "unknown port setting 'color'" in daemon_error(errno.EINVAL, c.set_port, "p1",
                                                           {"color": "red"})
    assert "tag: 'x' is not a VLAN number" in daemon_error(errno.EINVAL, c.set_port, "p1",
                                                            {"tag": "x"})
    assert "needs a tag" in daemon_error(errno.EINVAL, c.set_port, "p1", {"vlan-mode": "access"})
    daemon_error(errno.EINVAL, c.set_port, "p1", {"learning": "maybe"})
    daemon_error(errno.EINVAL, c.set_port, "p1", {"mtu": "20"})
    assert daemon_error(errno.ENOENT, c.set_port, "p9", {"tag": "1"}) == "no port named p9"
    daemon_error(errno.ENOENT, c.set_port, "p1", {"tag": "1"}, bridge="br1")
    assert c.ports("br0", "p1")[0]["settings"] == {}


def test_add_port_with_settings_is_atomic(daemon, c):
    c.add_bridge("br0")
    c.add_port("br0", "p1", TYPE, settings={"tag": "10", "learning": "off"})
    assert c.ports("br0", "p1")[0]["settings"] == {"tag": "10", "learning": "off"}
    stored = ConfigDB(daemon.switch.db.path).load()["bridges"]["br0"]["ports"]["p1"]
    assert stored["settings"] == {"tag": 10, "learning": False}
    assert "needs a tag" in daemon_error(errno.EINVAL, c.add_port, "br0", "p2", TYPE,
                                         settings={"vlan-mode": "native-tagged"})
    daemon_error(errno.EINVAL, c.add_port, "br0", "p2", TYPE, settings={"nope": "1"})
    assert [p["name"] for p in c.ports("br0")] == ["br0", "p1"]  # p2 never half-added


def test_set_bridge_and_fdb_stats(daemon, c):
    c.add_bridge("br0")
    c.add_port("br0", "p1", TYPE)
    c.set_bridge("br0", {"mac-aging-time": "60", "mac-table-size": "2"})
    assert c.bridges("br0")[0]["settings"] == {"mac-aging-time": "60", "mac-table-size": "2"}

    def learn():
        macs, p1 = daemon.switch.bridge("br0").macs, daemon.switch.port("p1")
        for i in range(3):
            macs.learn(0, bytes([2, 0, 0, 0, 0, i]), p1, 999.0)

    daemon.lt.call(learn)
    c.fdb_add("br0", "02:00:00:00:00:aa", "p1")
    assert c.fdb_stats("br0") == {"entries": 3, "static": 1, "learned": 3, "moved": 0,
                                  "aged": 0, "evicted": 1, "max_entries": 2, "aging_time": 60.0}
    c.set_bridge("br0", {"mac-aging-time": "", "mac-table-size": ""})
    assert c.bridges("br0")[0]["settings"] == {}
    assert c.fdb_stats("br0")["aging_time"] == 300.0
    assert "unknown bridge setting 'color'" in daemon_error(errno.EINVAL, c.set_bridge, "br0",
                                                            {"color": "1"})
    for bad in ("x", "-1", "0", "nan", "inf"):
        daemon_error(errno.EINVAL, c.set_bridge, "br0", {"mac-aging-time": bad})
    daemon_error(errno.EINVAL, c.set_bridge, "br0", {"mac-table-size": "1.5"})
    daemon_error(errno.ENOENT, c.set_bridge, "nope", {"mac-table-size": "1"})
    daemon_error(errno.ENOENT, c.fdb_stats, "nope")


def test_fdb_add_del_flush_and_vlan_filter(daemon, c):
    c.add_bridge("br0")
    c.add_port("br0", "p1", TYPE)
    c.add_port("br0", "p2", TYPE)
    c.fdb_add("br0", "02:00:00:00:00:01", "p1")
    c.fdb_add("br0", "02:00:00:00:00:02", "p2", vlan=10)

    def learn():
        macs = daemon.switch.bridge("br0").macs
        macs.learn(10, bytes.fromhex("505400000001"), daemon.switch.port("p1"), 999.0)
        macs.learn(0, bytes.fromhex("505400000002"), daemon.switch.port("p2"), 999.0)

    daemon.lt.call(learn)
    assert [(e["mac"], e["static"]) for e in c.fdb("br0", vlan=10)] == [
        ("50:54:00:00:00:01", False), ("02:00:00:00:00:02", True)]
    assert [e["mac"] for e in c.fdb("br0", vlan=0)] == ["02:00:00:00:00:01", "50:54:00:00:00:02"]
    assert c.fdb("br0", vlan=7) == []
    statics = ConfigDB(daemon.switch.db.path).load()["bridges"]["br0"]["config"]["static-macs"]
    assert {e["mac"] for e in statics} == {"02:00:00:00:00:01", "02:00:00:00:00:02"}
    assert c.fdb_flush("br0", "p1") == 1  # the learned one; statics stay
    assert c.fdb_flush("br0") == 1
    assert c.fdb_flush("br0") == 0
    assert len(c.fdb("br0")) == 2
    c.fdb_del("br0", "02:00:00:00:00:02", vlan=10)
    assert [e["mac"] for e in c.fdb("br0")] == ["02:00:00:00:00:01"]
    msg = daemon_error(errno.ENOENT, c.fdb_del, "br0", "02:00:00:00:00:02", vlan=10)
    assert msg == "no entry for 02:00:00:00:00:02 in VLAN 10 on bridge br0"
    assert "group address" in daemon_error(errno.EINVAL, c.fdb_add, "br0", "01:00:5e:00:00:01", "p1")
    daemon_error(errno.ENOENT, c.fdb_add, "br0", "02:00:00:00:00:03", "p9")
    daemon_error(errno.ENOENT, c.fdb_add, "nope", "02:00:00:00:00:03", "p1")
    assert "out of range" in daemon_error(errno.EINVAL, c.fdb_add, "br0", "02:00:00:00:00:03",
                                          "p1", vlan=4095)
    daemon_error(errno.EINVAL, c.fdb, "br0", vlan=5000)
    daemon_error(errno.ENOENT, c.fdb_flush, "br0", "p9")
    daemon_error(errno.ENOENT, c.fdb_flush, "nope")


def test_handler_exception_is_eio_and_server_lives_on(daemon, c, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(daemon.switch, "add_bridge", explode)
    assert "kaboom" in daemon_error(errno.EIO, c.add_bridge, "br0")
    monkeypatch.undo()
    c.add_bridge("br0")
    assert [b["name"] for b in c.bridges()] == ["br0"]


def test_large_dump(daemon, c, monkeypatch):
    c.add_bridge("br0")
    c.add_port("br0", "p1", TYPE)

    def learn():
        p1 = daemon.switch.port("p1")
        for i in range(5000):
            daemon.switch.bridge("br0").macs.learn(0, struct.pack(">HI", 0x0200, i), p1, 999.0)

    daemon.lt.call(learn)
    # Meanwhile the loop must keep running other callbacks (forwarding). The loop is
    # one thread, so a callback that runs between two encoded replies proves the
    # dump gave the loop back; encoding all 5000 replies in one go (~0.3 s) lets none in.
    events: list[str] = []
    encode = m.encode_reply

    def encode_spy(*args, **kwargs):
        events.append("reply")
        return encode(*args, **kwargs)

    monkeypatch.setattr(m, "encode_reply", encode_spy)
    done = threading.Event()

    def tick():
        events.append("tick")
        if not done.is_set():
            daemon.lt.loop.call_soon(tick)

    daemon.lt.loop.call_soon_threadsafe(tick)
    # One message per entry (without PACKED): the dump that is dear to encode.
    per_entry = c.request(Cmd.GET_FDB, {"bridge": "br0"}, dump=True)
    assert len(per_entry) == 5000
    done.set()
    replies = [i for i, e in enumerate(events) if e == "reply"]
    between = events[replies[0]:replies[-1]]
    assert len(replies) >= 5000
    assert between.count("tick") >= 2, "the event loop ran nothing else while the dump was encoded"
    # the connection is still in step afterwards, and packed entries say the same
    assert c.fdb("br0") == [{**e, "static": bool(e.get("static"))} for e in per_entry]


# -- robustness ----------------------------------------------------------------------


def raw_conn(path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(5)
    s.connect(path)
    return s


GARBAGE = [
    b"\x01",
    os.urandom(61),
    struct.pack("=IHHII", 4096, m.OVSLITE_FAMILY, 1, 1, 0) + bytes(8),
    struct.pack("=IHHII", 16, 0x7ABC, 1, 1, 0),
    bytes(100 * 1024),
    struct.pack("=IHHII", 40, m.OVSLITE_FAMILY, 1, 1, 0) + b"\xff" * 24,
]


def test_garbage_gets_error_replies_on_the_same_connection(daemon):
    s = raw_conn(daemon.path)
    try:
        for data in GARBAGE:
            s.send(data)
            reply = m.decode_reply(s.recv(m.MAX_MSG_SIZE))
            assert reply.kind == "error" and reply.errno in (errno.EINVAL, errno.EMSGSIZE,
                                                             errno.EOPNOTSUPP)
        # and a proper request afterwards, on the same connection
        s.send(m.encode_request(Cmd.ADD_BR, {"bridge": "br0"}, 77))
        reply = m.decode_reply(s.recv(m.MAX_MSG_SIZE))
        assert (reply.kind, reply.seq) == ("ack", 77)
    finally:
        s.close()
    with daemon.client() as c:
        assert [b["name"] for b in c.bridges()] == ["br0"]


def test_oversized_datagram_is_emsgsize(daemon):
    with raw_conn(daemon.path) as s:
        s.send(m.encode_request(Cmd.ADD_BR, {"bridge": "br0"}, 5) + bytes(m.MAX_MSG_SIZE))
        reply = m.decode_reply(s.recv(m.MAX_MSG_SIZE))
        assert (reply.kind, reply.errno, reply.seq) == ("error", errno.EMSGSIZE, 5)


def test_many_clients_at_once(daemon):
    idle = [raw_conn(daemon.path) for _ in range(30)]  # connected, silent
    clients = [daemon.client() for _ in range(10)]
    for i, cl in enumerate(clients):
        cl.add_bridge(f"br{i}")
    errors = []

    def work(cl):
        try:
            for _ in range(20):
                assert len(cl.bridges()) == 10
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(cl,)) for cl in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    for s in idle + clients:
        s.close()
    with daemon.client() as cl:
        assert len(cl.bridges()) == 10
    assert daemon.lt.call(lambda: len(daemon.server.connections)) <= 1


def test_client_vanishing_mid_dump(daemon):
    daemon.lt.call(daemon.switch.add_bridge, "br0")
    for _ in range(10):
        s = raw_conn(daemon.path)
        s.send(m.encode_request(Cmd.GET_BR, {}, 1, dump=True))
        s.close()
    with daemon.client() as c:
        assert [b["name"] for b in c.bridges()] == ["br0"]


def test_slow_reader_events_are_dropped_not_queued_forever(daemon):
    s = raw_conn(daemon.path)
    try:
        deadline = time.monotonic() + 5
        while not daemon.lt.call(lambda: daemon.server.connections):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        (conn,) = daemon.lt.call(lambda: list(daemon.server.connections))
        event = m.encode_reply(Cmd.MONITOR, {"bridge": "x" * 15, "reason": "r" * 2000}, 0)
        sent = daemon.lt.call(lambda: sum(conn.send_event(event) for _ in range(5000)))
        assert 0 < sent < 5000
        assert conn.dropped == 5000 - sent
        assert daemon.lt.call(lambda: len(conn.queue)) <= daemon.server.queue_limit
        # and at most QUEUE_BYTES of them (1024 capture messages would be 64 MB)
        assert daemon.lt.call(lambda: sum(map(len, conn.queue))) <= QUEUE_BYTES
        # the reader catches up: everything queued arrives, then replies flow again
        got = 0
        s.settimeout(2)
        while got < sent:
            assert s.recv(m.MAX_MSG_SIZE)
            got += 1
        s.send(m.encode_request(Cmd.GET_VERSION, {}, 3))
        assert m.decode_reply(s.recv(m.MAX_MSG_SIZE)).kind == "message"
    finally:
        s.close()


# -- socket ownership --------------------------------------------------------------


def test_second_server_on_live_socket_refuses(daemon, lt):
    other = ControlServer(daemon.switch, daemon.path, lt.loop)
    with pytest.raises(ControlSocketError, match=re.escape(
            f"another ovslited is already listening on {daemon.path}")):
        lt.call(other.open)
    lt.call(other.close)
    assert os.path.exists(daemon.path)
    with daemon.client() as c:
        assert c.version()["protocol"] == m.OVSLITE_PROTOCOL_VERSION


def test_stale_socket_is_replaced(lt, sockdir, tmp_path, fake_internal):
    path = os.path.join(sockdir, "ctl.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dead.bind(path)  # a socket file nobody listens on: a daemon that died
    dead.close()
    d = Daemon(lt, str(tmp_path / "db"), path).start()
    try:
        with d.client() as c:
            c.add_bridge("br0")
    finally:
        d.stop()
    assert not os.path.exists(path)


def test_path_that_is_not_a_socket_is_refused(lt, sockdir):
    path = os.path.join(sockdir, "ctl.sock")
    Path(path).write_text("precious")
    server = ControlServer(None, path, lt.loop)
    with pytest.raises(ControlSocketError, match="not a socket"):
        lt.call(server.open)
    assert Path(path).read_text() == "precious"


def test_close_unlinks_only_our_socket(lt, sockdir):
    path = os.path.join(sockdir, "ctl.sock")
    server = ControlServer(None, path, lt.loop)
    lt.call(server.open)
    os.unlink(path)  # someone replaced it behind our back
    Path(path).write_text("theirs")
    lt.call(server.close)
    assert Path(path).read_text() == "theirs"
    lt.call(server.close)  # idempotent


def test_close_disconnects_clients(daemon):
    s = raw_conn(daemon.path)
    daemon.lt.call(daemon.server.close)
    assert not os.path.exists(daemon.path)
    assert s.recv(100) == b""
    s.close()
    with pytest.raises(ConnectError, match="cannot connect to ovslited"):
        daemon.client()


def test_client_timeout(sockdir):
    path = os.path.join(sockdir, "mute.sock")
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    mute.bind(path)
    mute.listen(1)  # accepts into the backlog, never answers
    try:
        with pytest.raises(ControlError, match="no reply from ovslited within 0.2 s") as exc:
            Client(path, timeout=0.2).connect().version()
        assert exc.value.errno == errno.ETIMEDOUT
    finally:
        mute.close()


def test_doc_example_runs(daemon, monkeypatch):
    """The pyroute2 example in docs/control-protocol.md works as printed."""
    doc = Path(__file__).resolve().parent.parent / "docs" / "control-protocol.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    example = [b for b in blocks if "SOCK_SEQPACKET" in b]
    assert example, "no runnable example in the protocol document"
    daemon.lt.call(daemon.switch.add_bridge, "br0")
    monkeypatch.setenv("OVSLITE_SOCKET", daemon.path)
    out: list = []
    exec(compile(example[0], str(doc), "exec"), {"print": lambda *a: out.append(a)})
    assert any("br0" in str(a) for a in out), out
