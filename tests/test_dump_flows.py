"""`ovslite-ctl dump-flows` (GET_FLOW): the datapath's flow cache, through the CLI.

Frames go in through `Datapath.receive`, on the daemon's loop thread, across
two bridges joined by a patch cable:  e0, e1 -- br0 -[pa0|pb0]- br1 -- e2.
"""

from __future__ import annotations

import errno
import json

import pytest
import structlog
from helpers import TYPE, CtlRunner, one_line_error

from ovslite.control import messages as m
from ovslite.control.messages import Cmd
from ovslite.vnet import ethernet, format_mac, push_tag
from ovslite_ctl.client import DaemonError

A, B, C, D = (bytes.fromhex(f"02000000000{i}") for i in range(1, 5))
BCAST = b"\xff" * 6
NOW = 50.0


def frame(dst: bytes, src: bytes, tci: int | None = None) -> bytes:
    """60 bytes of IPv4-typed Ethernet (64 with a tag) behind a virtio_net_hdr."""
    pkt = ethernet(dst + src + b"\x08\x00" + bytes(46))
    return pkt if tci is None else push_tag(pkt, tci)


def build(sw) -> None:
    for bridge, ports, patch, peer in (("br0", ["e0", "e1"], "pa0", "pb0"),
                                       ("br1", ["e2"], "pb0", "pa0")):
        sw.add_bridge(bridge)
        for name in ports:
            sw.add_port(bridge, name, TYPE)
        sw.add_port(bridge, patch, "patch", {"peer": peer})


@pytest.fixture
def ctl(daemon):
    """ovslite-ctl against conftest.py's daemon with the two bridges; clock at NOW."""
    daemon.now = NOW
    daemon.lt.call(build, daemon.switch)
    with structlog.testing.capture_logs():
        yield CtlRunner(daemon)


def receive(ctl: CtlRunner, port: str, *packets: bytes) -> None:
    """One batch received on `port`, as the datapath's reader callback would pass it."""
    sw = ctl.switch
    ctl.call(lambda: sw.datapath.receive(sw.port(port), list(packets)))


def counters(ctl: CtlRunner) -> tuple[int, int, int]:
    cache = ctl.switch.datapath.flows
    return ctl.call(lambda: (len(cache), cache.hits, cache.misses))


def converse(daemon, ctl: CtlRunner) -> None:
    """A on e0 talks to B on e2: each learns the other, then a few frames hit flows."""
    receive(ctl, "e0", frame(B, A))  # B unknown: flooded, nothing cached
    receive(ctl, "e2", frame(A, B))  # the reply: known unicast, cached for e2
    receive(ctl, "e0", *[frame(B, A)] * 3)  # slow path once more, cached for e0
    daemon.now = NOW + 1
    receive(ctl, "e0", *[frame(B, A)] * 2)  # hits
    receive(ctl, "e2", frame(A, B))  # a hit
    daemon.now = NOW + 1.4


def summary(ctl: CtlRunner) -> str:
    return "flows: {}, hits: {}, misses: {}".format(*counters(ctl))


AB = f"dl_src={format_mac(A)},dl_dst={format_mac(B)}"
BA = f"dl_src={format_mac(B)},dl_dst={format_mac(A)}"


def test_flows_through_a_patch_pair(daemon, ctl):
    converse(daemon, ctl)
    assert counters(ctl)[:2] == (2, 3)
    assert len(ctl.call(lambda: ctl.switch.port("e2").netdev.sent)) == 6  # all delivered
    assert ctl("dump-flows").stdout.splitlines() == [
        summary(ctl),
        f"in_port=e0,{AB},dl_type=0x0800 packets:2, bytes:120, used:0.400s, "
        "actions:pa0>pb0,output:e2",
        f"in_port=e2,{BA},dl_type=0x0800 packets:1, bytes:60, used:0.400s, "
        "actions:pb0>pa0,output:e0",
    ]


def test_bridge_filter(daemon, ctl):
    converse(daemon, ctl)
    br0 = ctl("dump-flows", "br0").stdout.splitlines()
    br1 = ctl("dump-flows", "br1").stdout.splitlines()
    # the first line is the whole datapath's either way
    assert br0[0] == br1[0] == summary(ctl)
    assert [line.split()[0] for line in br0[1:]] == [f"in_port=e0,{AB},dl_type=0x0800"]
    assert [line.split()[0] for line in br1[1:]] == [f"in_port=e2,{BA},dl_type=0x0800"]


def test_tagged_flow_shows_the_vlan_not_the_ethertype(daemon, ctl):
    tci = 5 << 13 | 10  # priority 5, VLAN 10: the key holds the whole tag
    receive(ctl, "e1", frame(BCAST, C, tci))
    receive(ctl, "e2", frame(C, D, tci))
    receive(ctl, "e1", frame(D, C, tci))
    receive(ctl, "e1", frame(D, C, tci))
    lines = ctl("dump-flows", "br0").stdout.splitlines()
    assert lines[1:] == [
        f"in_port=e1,dl_src={format_mac(C)},dl_dst={format_mac(D)},dl_vlan=10 packets:1, "
        "bytes:64, used:0.000s, actions:pa0>pb0,output:e2",
    ]
    (flow,) = json.loads(ctl("--format", "json", "dump-flows", "br1").stdout)["flows"]
    assert (flow["in_port"], flow["dl_vlan"], flow["dl_type"]) == ("e2", 10, None)


def test_json(daemon, ctl):
    converse(daemon, ctl)
    n, hits, misses = counters(ctl)
    doc = json.loads(ctl("--format", "json", "dump-flows").stdout)
    assert doc["stats"] == {"flows": n, "hits": hits, "misses": misses}
    assert doc["flows"][0] == {
        "bridge": "br0", "in_port": "e0", "dl_src": format_mac(A), "dl_dst": format_mac(B),
        "dl_vlan": None, "dl_type": 0x0800, "packets": 2, "bytes": 120, "used": 0.4,
        "hops": [{"port": "pa0", "peer": "pb0"}], "output": "e2",
    }
    assert [(f["bridge"], f["in_port"], f["packets"]) for f in doc["flows"]] == [
        ("br0", "e0", 2), ("br1", "e2", 1)]


def test_empty_cache(ctl):
    assert ctl("dump-flows").stdout == "flows: 0, hits: 0, misses: 0\n"
    assert ctl("dump-flows", "br1").stdout == "flows: 0, hits: 0, misses: 0\n"
    assert json.loads(ctl("--format", "json", "dump-flows").stdout) == {
        "stats": {"flows": 0, "hits": 0, "misses": 0}, "flows": []}


def test_errors_are_one_line(ctl):
    one_line_error(ctl("dump-flows", "nope", code=1), 1, "ovslite-ctl: no bridge named nope")
    one_line_error(ctl("dump-flows", "a/b", code=2), 2, "contains '/'")
    one_line_error(ctl("dump-flows", "br0", "br1", code=2), 2, "unexpected extra argument")


def test_malformed_requests_get_error_replies(daemon, ctl):
    with daemon.client() as c:
        with pytest.raises(DaemonError) as exc:
            c.request(Cmd.GET_FLOW, {"bridge": "nope"}, dump=True)
        assert exc.value.errno == errno.ENOENT
        # OVSLITE_ATTR_BRIDGE ends the message: make it "br0x", not NUL-terminated
        data = bytearray(m.encode_request(Cmd.GET_FLOW, {"bridge": "br0"}, 7, dump=True))
        assert data[-4:] == b"br0\0"
        data[-1:] = b"x"
        c.sock.send(bytes(data))
        reply = m.decode_reply(c.sock.recv(m.MAX_MSG_SIZE))
        assert (reply.kind, reply.errno, reply.seq) == ("error", errno.EINVAL, 7)
        assert "NUL-terminated" in reply.message
        # a u32 sent as OVSLITE_ATTR_BRIDGE: not a string either
        data = bytearray(m.encode_request(Cmd.GET_FLOW, {"port_no": 1}, 8, dump=True))
        data[-6:-4] = (3).to_bytes(2, "little")  # the attribute's type: OVSLITE_ATTR_BRIDGE
        c.sock.send(bytes(data))
        reply = m.decode_reply(c.sock.recv(m.MAX_MSG_SIZE))
        assert (reply.kind, reply.errno, reply.seq) == ("error", errno.EINVAL, 8)
        converse(daemon, ctl)
        assert c.flows()["stats"]["flows"] == 2  # the same connection still works
