"""Trace: the decisions it reports, that it changes nothing, that it agrees with forwarding,
--generate, patch ports and loops, and the control protocol / CLI path."""

from __future__ import annotations

import dataclasses
import errno
import json
import random

import pytest
import structlog
from helpers import CtlRunner, FakeNetdev, make_bridge

from ovslite import portconfig
from ovslite import trace as tr
from ovslite.bridge import Port
from ovslite.control.messages import Cmd
from ovslite.datapath import MAX_DEPTH, Datapath
from ovslite.db import ConfigDB
from ovslite.netdev import netdev_types, register
from ovslite.switch import Switch, SwitchError
from ovslite.vnet import VNET_HDR_LEN, format_mac
from ovslite_ctl.client import Client, DaemonError
from ovslite_ctl.trace import render_text

A = "02:00:00:00:00:01"
B = "02:00:00:00:00:02"
C = "02:00:00:00:00:03"
X = "02:00:00:00:00:ff"  # never seen
BCAST = "ff:ff:ff:ff:ff:ff"
MCAST = "01:00:5e:00:00:01"
NOW = 1000.0


# -- helpers -------------------------------------------------------------------------


def conf(port: Port, **settings) -> None:
    """Port settings as set-port takes them (underscores for dashes)."""
    changes = {k.replace("_", "-"): str(v) for k, v in settings.items()}
    port.bridge.configure_port(port, portconfig.merge(port.settings, portconfig.parse(changes)))


def flow(in_port: str, src: str, dst: str, vlan: int | None = None, dl_type: int = 0x0800):
    fields = [f"in_port={in_port}", f"dl_src={src}", f"dl_dst={dst}", f"dl_type={dl_type:#x}"]
    if vlan is not None:
        fields.append(f"dl_vlan={vlan}")
    return tr.parse_flow(fields)


def run(port: Port, src: str, dst: str, vlan: int | None = None, now: float = NOW,
        ports=None) -> tr.Trace:
    f = flow(port.name, src, dst, vlan)
    return tr.trace_packet(port, tr.build_packet(f), now, ports, f)


def learn(port: Port, mac: str, now: float = NOW, vlan: int | None = None) -> None:
    """Have `port`'s bridge learn `mac` on it, by forwarding a broadcast from it."""
    port.bridge.forward(port, [tr.build_packet(flow(port.name, mac, BCAST, vlan))], now)


def outs(t: tr.Trace) -> list[tuple]:
    return [(o.bridge, o.port, o.vlan, o.tagged) for o in t.outputs]


def names(t: tr.Trace) -> list[str]:
    return [o.port for o in t.outputs]


def kinds(t: tr.Trace, kind: str) -> list[str]:
    return [s.detail for s in t.steps if s.kind == kind]


def state(bridges) -> list:
    """Everything a trace must leave alone: MAC tables (entries, eviction queues, counters),
    port counters and drop reasons, storm-control buckets."""
    out = []
    for br in bridges:
        macs = br.macs
        out.append((
            {k: (e.port.name, e.used, e.queued, e.static) for k, e in macs.entries.items()},
            {getattr(p, "name", p): [(e.vlan, e.mac) for e in q]
             for p, q in macs.eviction_order().items()},
            dataclasses.asdict(macs.stats),
            {n: (p.stats.as_dict(), dict(p.stats.drops), p.up, p.reason,
                 (p.storm.tokens, p.storm.last) if p.storm else None)
             for n, p in br.ports.items()},
        ))
    return out


def form_of(q: bytes) -> tuple[bool, int]:
    """(tagged, VID) of a packet as it would go on the wire."""
    tagged = q[22] == 0x81 and q[23] == 0
    return tagged, ((q[24] & 0x0F) << 8 | q[25]) if tagged else 0


# -- the flow and the frame ------------------------------------------------------------


def test_build_packet_untagged_and_tagged():
    p = tr.build_packet(flow("p1", A, B))
    assert p[:VNET_HDR_LEN] == bytes(VNET_HDR_LEN) and len(p) == VNET_HDR_LEN + 60
    frame = p[VNET_HDR_LEN:]
    assert format_mac(frame[0:6]) == B and format_mac(frame[6:12]) == A
    assert frame[12:14] == b"\x08\x00" and frame[14:] == bytes(46)
    q = tr.build_packet(flow("p1", A, B, vlan=10, dl_type=0x86DD))[VNET_HDR_LEN:]
    assert len(q) == 60 and q[12:16] == b"\x81\x00\x00\x0a" and q[16:18] == b"\x86\xdd"


def test_parse_flow_forms_and_errors():
    f = tr.parse_flow(["in_port=p1,dl_src=02-00-00-00-00-01", "dl_dst=FF:FF:FF:FF:FF:FF",
                       "dl_vlan=0", "dl_type=0x806"])
    assert (f.in_port, format_mac(f.dl_src), format_mac(f.dl_dst), f.dl_vlan, f.dl_type) == \
        ("p1", A, BCAST, 0, 0x0806)
    assert str(f) == f"in_port=p1,dl_src={A},dl_dst={BCAST},dl_vlan=0,dl_type=0x0806"
    bad = {
        ("dl_src=" + A, "dl_dst=" + B): "missing field in_port=",
        ("in_port=p1", "dl_dst=" + B): "missing field dl_src=",
        ("in_port=p1", "dl_src=" + A): "missing field dl_dst=",
        ("in_port=p1", "dl_src=zz", "dl_dst=" + B): "dl_src: invalid MAC address 'zz'",
        ("in_port=p1", "dl_src=" + A, "dl_dst=1:2:3"): "dl_dst: invalid MAC address",
        ("in_port=p1", "dl_src=" + A, "dl_dst=" + B, "dl_vlan=4096"): "VLAN 4096 is out of range",
        ("in_port=p1", "dl_src=" + A, "dl_dst=" + B, "dl_vlan=ten"): "not a VLAN number",
        ("in_port=p1", "dl_src=" + A, "dl_dst=" + B, "dl_type=ip"): "dl_type: 'ip' is not a number",
        ("in_port=p1", "dl_src=" + A, "dl_dst=" + B, "dl_type=0x8100"): "use dl_vlan",
        ("in_port=p1", "dl_src=" + A, "dl_dst=" + B, "dl_type=0x10000"): "out of range",
        ("in_port=p1", "dl_src=" + A, "dl_dst=" + B, "nw_src=1.2.3.4"): "unknown field 'nw_src'",
        ("in_port=p1", "in_port=p2", "dl_src=" + A, "dl_dst=" + B): "given more than once",
        ("in_port=p1", "dl_src", "dl_dst=" + B): "expected key=value",
    }
    for args, text in bad.items():
        with pytest.raises(ValueError) as exc:
            tr.parse_flow(args)
        assert text in str(exc.value) and "\n" not in str(exc.value), (args, str(exc.value))


# -- decisions on one bridge ------------------------------------------------------------


def test_known_unicast_has_one_output_and_says_where_and_how_old():
    br, (p1, p2, p3) = make_bridge()
    learn(p2, B, now=NOW - 12)
    t = run(p1, A, B)
    assert outs(t) == [("br0", "p2", 0, False)]
    (lookup,) = kinds(t, "lookup")
    assert lookup == f"{B} in VLAN 0: hit, on p2 (learned, age 12 s): output to p2"
    assert kinds(t, "learn") == [f"would learn {A} on p1 in VLAN 0"]
    assert kinds(t, "flood") == [] and t.drop_reason is None
    assert t.as_dict()["result"] == "output: p2 (untagged)"


def test_static_entry_hit():
    br, (p1, p2, p3) = make_bridge()
    br.macs.add_static(0, bytes.fromhex(B.replace(":", "")), p3, 0.0)  # old, but never ages
    t = run(p1, A, B)
    assert names(t) == ["p3"] and "hit, on p3 (static entry)" in kinds(t, "lookup")[0]


def test_unknown_unicast_floods_and_aged_entry_counts_as_unknown():
    br, (p1, p2, p3) = make_bridge()
    t = run(p1, A, X)
    assert names(t) == ["p2", "p3"]
    assert kinds(t, "lookup") == [f"{X} in VLAN 0: miss: flood as unknown unicast"]
    assert kinds(t, "flood") == ["unknown unicast in VLAN 0: to p2, p3"]
    learn(p2, B, now=NOW - 301)  # older than the 300 s aging time, not yet expired
    t = run(p1, A, B)
    assert names(t) == ["p2", "p3"]
    assert "entry on p2 aged out (age 301 s > mac-aging-time 300 s)" in kinds(t, "lookup")[0]


def test_broadcast_respects_bcast_flood_and_names_who_is_left_out():
    br, ports = make_bridge(5)
    p1, p2, p3, p4, p5 = ports
    conf(p3, bcast_flood="off")
    conf(p4, flood="off", mcast_flood="off")  # only unknown unicast / multicast flags
    br.set_port_state(p5, False, "no carrier")
    t = run(p1, A, BCAST)
    assert names(t) == ["p2", "p4"]
    assert kinds(t, "flood") == ["broadcast in VLAN 0: to p2, p4; not to p3 (bcast-flood off), "
                                 "p5 (down (no carrier))"]
    assert names(run(p1, A, MCAST)) == ["p2", "p3"]
    assert names(run(p1, A, X)) == ["p2", "p3"]


def test_access_to_trunk_pushes_the_tag_and_trunk_to_access_strips_it():
    br, (p1, p2, p3) = make_bridge()
    conf(p1, tag=10)
    conf(p2, trunks="10,20")
    conf(p3, tag=20)
    t = run(p1, A, BCAST)
    assert outs(t) == [("br0", "p2", 10, True)]
    assert kinds(t, "vlan") == ["untagged frame enters VLAN 10 (access port, tag 10)"]
    assert kinds(t, "egress") == ["p2: VLAN 10 tagged, tag pushed (trunk port, trunks 10,20)"]
    assert t.as_dict()["result"] == "output: p2 (VLAN 10 tagged)"
    t = run(p2, B, BCAST, vlan=20)
    assert outs(t) == [("br0", "p3", 20, False)]
    assert kinds(t, "vlan") == ["tagged frame, VID 20: enters VLAN 20 (trunk port, trunks 10,20)"]
    assert kinds(t, "egress") == ["p3: VLAN 20 untagged, tag stripped (access port, tag 20)"]


def test_priority_tag_is_rewritten_on_a_tagged_egress():
    br, (p1, p2, p3) = make_bridge()
    conf(p1, tag=10, vlan_mode="native-untagged")
    conf(p2, trunks=10)
    t = run(p1, A, BCAST, vlan=0)
    assert kinds(t, "vlan")[0].startswith("priority-tagged frame (VID 0) enters VLAN 10")
    assert kinds(t, "egress") == [
        "p2: VLAN 10 tagged, VID rewritten 0 -> 10 (trunk port, trunks 10)",
        "p3: VLAN 10 tagged, VID rewritten 0 -> 10 (trunk port, all VLANs)"]


def test_vlan_not_carried_is_a_drop_with_the_reason():
    br, (p1, p2, p3) = make_bridge()
    conf(p1, tag=10)
    t = run(p1, A, BCAST, vlan=30)
    assert t.outputs == [] and t.drop_reason == "VLAN 30 not carried by port p1 (access port, tag 10)"
    assert t.as_dict()["result"] == "drop: VLAN 30 not carried by port p1 (access port, tag 10)"
    conf(p2, trunks="10,20")
    t = run(p2, A, BCAST, vlan=30)
    assert t.drop_reason == "VLAN 30 not carried by port p2 (trunk port, trunks 10,20)"
    assert [s.kind for s in t.steps] == ["flow", "bridge", "ingress", "vlan", "drop"]
    t = run(p2, A, BCAST)  # untagged: VLAN 0 is not in trunks
    assert t.drop_reason == ("untagged frames not accepted by port p2 "
                             "(trunk port, trunks 10,20, without VLAN 0)")


def test_isolated_ports_reach_only_non_isolated_ones():
    br, ports = make_bridge(4)
    p1, p2, p3, p4 = ports
    conf(p1, isolated="on")
    conf(p2, isolated="on")
    t = run(p1, A, BCAST)
    assert names(t) == ["p3", "p4"]
    assert kinds(t, "flood") == ["broadcast in VLAN 0: to p3, p4; not to p2 (isolated, as is p1)"]
    assert names(run(p3, A, BCAST)) == ["p1", "p2", "p4"]
    learn(p2, B)
    t = run(p1, A, B)
    assert t.outputs == [] and t.drop_reason == (
        f"destination {B} is on p2, which is unreachable: isolated, as is p1")


def test_admin_down_ingress_drops_and_admin_down_egress_is_left_out():
    br, (p1, p2, p3) = make_bridge()
    conf(p1, admin="down")
    t = run(p1, A, BCAST)
    assert kinds(t, "ingress") == ["p1 (port 1, type system): down (administratively down)"]
    assert t.drop_reason == "ingress port p1 is down (administratively down)"
    assert kinds(t, "learn") == []  # nothing past the port state
    conf(p1, admin="up")
    conf(p3, admin="down")
    t = run(p1, A, BCAST)
    assert names(t) == ["p2"] and "p3 (down (administratively down))" in kinds(t, "flood")[0]


def test_destination_behind_ingress_port_and_frame_to_itself():
    br, (p1, p2, p3) = make_bridge()
    learn(p1, B)
    t = run(p1, A, B)
    assert t.drop_reason == f"destination {B} is behind the ingress port p1"
    # A frame to its own source: forward() learns first, then finds it on the ingress port.
    t = run(p2, C, C)
    assert t.outputs == [] and t.drop_reason == f"destination {C} is behind the ingress port p2"
    assert br.forward(p2, [tr.build_packet(flow("p2", C, C))], NOW) == {}


def test_learning_cases():
    br, (p1, p2, p3) = make_bridge()
    learn(p1, A, now=NOW - 5)
    assert kinds(run(p1, A, X), "learn") == [
        f"{A} in VLAN 0: already learned (age 5 s) on p1: would refresh it"]
    assert kinds(run(p2, A, X), "learn") == [f"{A} in VLAN 0: would move from p1 to p2"]
    br.macs.add_static(0, bytes.fromhex(C.replace(":", "")), p3, 0.0)
    assert kinds(run(p1, C, X), "learn") == [f"{C} in VLAN 0: static entry on p3: not moved"]
    assert kinds(run(p1, MCAST, X), "learn") == [f"{MCAST} is a group address: never learned"]
    conf(p2, learning="off")
    assert kinds(run(p2, B, X), "learn") == [f"learning off on p2: {B} not learned"]


def test_full_table_predicts_the_eviction():
    br, (p1, p2, p3) = make_bridge()
    br.macs.resize(3)
    for i, mac in enumerate((A, B, C)):
        learn(p2, mac, now=NOW - 10 + i)
    t = run(p1, X, BCAST)
    (text,) = kinds(t, "learn")
    assert text.startswith(f"would learn {X} on p1 in VLAN 0, evicting ")
    victim = text.split("evicting ")[1].split(" ")[0]
    before = set(format_mac(k[1]) for k in br.macs.entries)
    learn(p1, X)
    after = set(format_mac(k[1]) for k in br.macs.entries)
    assert before - after == {victim}


def test_storm_control_is_reported_not_consumed():
    br, (p1, p2, p3) = make_bridge()
    conf(p1, storm_control=2)
    learn(p3, B)
    t = run(p1, A, BCAST)
    assert kinds(t, "storm") == ["storm control on p1 (2 flooded frames/s) applies: 2.0 tokens, "
                                 "would pass (the trace takes none)"]
    assert kinds(run(p1, A, B), "storm") == []  # a known unicast is not limited
    before = state([br])
    for _ in range(5):
        run(p1, A, BCAST)
    assert state([br]) == before
    for _ in range(2):
        br.forward(p1, [tr.build_packet(flow("p1", A, BCAST))], NOW)
    t = run(p1, A, BCAST)
    assert t.drop_reason == "storm control on p1: more than 2 flooded frames/s"
    assert br.forward(p1, [tr.build_packet(flow("p1", A, BCAST))], NOW) == {}
    assert names(run(p1, A, BCAST, now=NOW + 0.5)) == ["p2", "p3"]  # one token back


def test_nobody_to_flood_to():
    br, (p1, p2) = make_bridge(2)
    conf(p1, tag=10)
    conf(p2, tag=20)
    t = run(p1, A, BCAST)
    assert kinds(t, "flood") == ["broadcast in VLAN 10: to nobody; not to p2 "
                                 "(VLAN 10 not carried: access port, tag 20)"]
    assert t.drop_reason == "no port to flood to in VLAN 10"


def test_trace_changes_nothing():
    br, ports = make_bridge(4)
    conf(ports[0], storm_control=5)
    conf(ports[1], tag=10)
    learn(ports[2], B, now=NOW - 100)
    before = state([br])
    for dst in (BCAST, MCAST, B, X, A):
        for port in ports:
            for vlan in (None, 0, 10):
                run(port, A, dst, vlan)
    assert state([br]) == before


# -- trace agrees with Bridge.forward ------------------------------------------------------


SETTINGS = [
    {}, {"tag": "10"}, {"tag": "20"}, {"trunks": "10,20"}, {"trunks": "0,10"},
    {"tag": "10", "vlan-mode": "native-untagged"}, {"tag": "10", "vlan-mode": "native-tagged"},
    {"tag": "20", "vlan-mode": "native-tagged", "trunks": "10"},
]
FLAGS = ["learning", "flood", "mcast-flood", "bcast-flood", "isolated"]


def test_trace_agrees_with_forward_on_random_bridges():
    rng = random.Random(42)
    macs = [A, B, C, X, BCAST, MCAST]
    odd = ["00:00:00:00:00:00", "02:bb:00:00:00:01", "01:80:c2:00:00:0e", "01:80:c2:00:00:00"]
    for _ in range(600):
        br, ports = make_bridge(rng.randint(2, 5))
        if rng.random() < 0.3:  # a port that is the bridge's own host
            br.set_local_mac(rng.choice(ports), bytes.fromhex("02bb00000001"))
        br.forward_bpdu = rng.random() < 0.3
        for p in ports:
            s = dict(rng.choice(SETTINGS))
            for flag in FLAGS:
                if rng.random() < 0.15:
                    s[flag] = "off" if flag != "isolated" else "on"
            if rng.random() < 0.1:
                s["admin"] = "down"
            if rng.random() < 0.1:
                s["storm-control"] = "1"
            br.configure_port(p, portconfig.merge({}, portconfig.parse(s)))
            if rng.random() < 0.1:
                br.set_port_state(p, False, "no carrier")
        for _ in range(rng.randint(0, 6)):  # some history: learned entries, used tokens
            p = rng.choice(ports)
            src = rng.choice(macs[:4])
            learn(p, src, now=NOW - rng.choice((0, 10, 400)), vlan=rng.choice((None, 10, 20)))
        if rng.random() < 0.2:
            br.macs.add_static(rng.choice((0, 10, 20)), bytes.fromhex("0200000000ee"),
                               rng.choice(ports), 0.0)
        in_port = rng.choice(ports)
        src, dst = rng.choice(macs + odd[:2]), rng.choice(macs + odd + ["02:00:00:00:00:ee"])
        vlan = rng.choice((None, None, 0, 10, 20, 30, 4095))
        f = flow(in_port.name, src, dst, vlan)
        pkt = tr.build_packet(f)
        before = state([br])
        t = tr.trace_packet(in_port, pkt, NOW, None, f)
        assert state([br]) == before, t.steps
        got = br.forward(in_port, [pkt], NOW)
        want = {o.port: (o.tagged, o.vlan if o.tagged else 0) for o in t.outputs}
        assert {p.name: form_of(b[0]) for p, b in got.items()} == want, \
            "\n".join(render_text(t.as_dict()))
        assert list(want) == [p.name for p in got]  # same order, too
        for reason in set(in_port.stats.drops) & BAD_FRAME_DROPS:  # the counter trace names
            assert f"counted as {reason}" in t.drop_reason, t.drop_reason


# -- frames the bridge drops before any lookup ------------------------------------------------

BAD_FRAME_DROPS = {"zero-source", "multicast-source", "own-source", "reserved-vlan",
                   "reserved-group"}


@pytest.mark.parametrize(("src", "dst", "vlan", "reason"), [
    ("00:00:00:00:00:00", BCAST, None,
     "source 00:00:00:00:00:00 is all zeros (counted as zero-source)"),
    (MCAST, B, None, f"source {MCAST} is a group address (counted as multicast-source)"),
    ("02:bb:00:00:00:01", B, 10, "source 02:bb:00:00:00:01 is the bridge's own address "
     "(of port p3) (counted as own-source)"),
    (A, B, 4095, "VLAN 4095 is reserved (counted as reserved-vlan)"),
    (A, "01:80:c2:00:00:0e", None, "01:80:c2:00:00:0e is a reserved group address (LLDP), "
     "not forwarded without forward-bpdu (counted as reserved-group)"),
    (A, "01:80:c2:00:00:00", 10, "01:80:c2:00:00:00 is a reserved group address (STP), "
     "not forwarded without forward-bpdu (counted as reserved-group)"),
])
def test_trace_says_why_a_bad_frame_is_dropped(src, dst, vlan, reason):
    br, (p1, p2, p3) = make_bridge()
    br.set_local_mac(p3, bytes.fromhex("02bb00000001"))
    learn(p2, B)
    t = run(p1, src, dst, vlan)
    assert t.outputs == [] and t.drop_reason == reason
    br.forward(p1, [tr.build_packet(flow("p1", src, dst, vlan))], NOW)
    assert set(p1.stats.drops) == {reason.rsplit(" ", 1)[1].rstrip(")")}


def test_trace_floods_reserved_groups_with_forward_bpdu():
    br, (p1, p2, p3) = make_bridge()
    br.forward_bpdu = True
    t = run(p1, A, "01:80:c2:00:00:02")
    assert kinds(t, "lookup") == ["01:80:c2:00:00:02 is a reserved group address (LACP, slow "
                                  "protocols): flood as multicast (forward-bpdu on)"]
    assert names(t) == ["p2", "p3"]


def test_trace_of_the_bridges_own_host_is_ordinary():
    br, (p1, p2, p3) = make_bridge()
    br.set_local_mac(p3, bytes.fromhex("02bb00000001"))
    t = run(p3, "02:bb:00:00:00:01", BCAST)
    assert names(t) == ["p1", "p2"]
    assert kinds(t, "learn") == ["would learn 02:bb:00:00:00:01 on p3 in VLAN 0"]


# -- a Switch: patch ports, loops, --generate ----------------------------------------------

TYPE = "test-trace"


class TraceNetdev(FakeNetdev):
    type = TYPE  # its own name: the trace's text shows it (test_cli_text)


if TYPE not in netdev_types():
    register(TraceNetdev)


@pytest.fixture
def sw(tmp_path, fake_internal):
    s = Switch(ConfigDB(str(tmp_path / "conf.db")), Datapath(None, clock=lambda: NOW))
    s.load()
    yield s
    s.shutdown()


def topology(sw: Switch, spec: dict[str, list]) -> Switch:
    """{'br0': ['p1', ('pa', 'pb')], ...}: plain ports by name, patch ports as (name, peer)."""
    for bridge, ports in spec.items():
        sw.add_bridge(bridge)
        for p in ports:
            if isinstance(p, tuple):
                sw.add_port(bridge, p[0], "patch", {"peer": p[1]})
            else:
                sw.add_port(bridge, p, TYPE)
    return sw


def strace(sw: Switch, bridge: str, in_port: str, src: str, dst: str, vlan=None, generate=False):
    return tr.trace_switch(sw, bridge, flow(in_port, src, dst, vlan), generate)


def sent(sw: Switch) -> dict[str, list]:
    return {n: p.netdev.sent for n, p in sw.ports.items() if getattr(p.netdev, "sent", None)}


def test_patch_ports_are_real_patch_netdevs_and_up(sw):
    topology(sw, {"br0": ["p1", ("pa", "pb")], "br1": [("pb", "pa"), "p9"]})
    assert type(sw.port("pa").netdev).__name__ == "PatchNetdev"
    assert sw.port("pa").up and sw.port("pb").up


def test_patch_into_a_second_bridge_and_out(sw):
    topology(sw, {"br0": ["p1", "p2", ("pa", "pb")], "br1": [("pb", "pa"), "p9"]})
    sw.set_port("p1", {"tag": "10"})
    sw.set_port("p9", {"tag": "10"})
    t = strace(sw, "br0", "p1", A, BCAST)
    assert outs(t) == [("br0", "br0", 10, True), ("br0", "p2", 10, True),
                       ("br1", "br1", 10, True), ("br1", "p9", 10, False)]
    assert t.as_dict()["result"] == ("output: br0, p2, br1:br1 (VLAN 10 tagged), "
                                     "br1:p9 (VLAN 10 untagged)")
    patch = [s for s in t.steps if s.kind == "patch"]
    assert [(s.bridge, s.port, s.detail) for s in patch] == [
        ("br0", "pa", "pa is patched to pb on bridge br1: continue there")]
    entered = [(s.bridge, s.port, s.depth) for s in t.steps if s.kind == "bridge"]
    assert entered == [("br0", "p1", 0), ("br1", "pb", 1)]
    assert all(s.depth == 1 for s in t.steps[t.steps.index(patch[0]) + 1:])
    # and it is what the datapath does
    t = strace(sw, "br0", "p1", A, BCAST, generate=True)
    assert kinds(t, "inject") == ["injected on p1; left the switch on br0, p2, br1:br1, br1:p9 "
                                  "(as traced)"]
    assert {n: [form_of(q) for q in b] for n, b in sent(sw).items()} == {
        "br0": [(True, 10)], "p2": [(True, 10)], "br1": [(True, 10)], "p9": [(False, 0)]}
    # A's location was learned on both bridges: now a unicast to A crosses as unicast.
    t = strace(sw, "br1", "p9", B, A)
    assert outs(t) == [("br0", "p1", 10, False)]
    assert [s.detail for s in t.steps if s.kind == "lookup"] == [
        f"{A} in VLAN 10: hit, on pb (learned, age 0 s): output to pb",
        f"{A} in VLAN 10: hit, on p1 (learned, age 0 s): output to p1"]


def test_patch_peer_admin_down_takes_this_end_down(sw):
    # A cable whose far end is shut has no link: br0 stops flooding into it.
    topology(sw, {"br0": ["p1", ("pa", "pb")], "br1": [("pb", "pa"), "p9"]})
    sw.set_port("pb", {"admin": "down"})
    pa = sw.ports["pa"]
    assert (pa.up, pa.reason) == (False, "peer pb is administratively down")
    t = strace(sw, "br0", "p1", A, BCAST)
    assert names(t) == ["br0"] and t.drops == []
    assert "br1" not in render_text(t.as_dict())
    sw.set_port("pb", {"admin": "up"})
    assert pa.up


def test_patch_loop_ring_stops_at_the_depth_bound(sw):
    # br0 -> br1 -> br2 -> br0 ..., both ways round: every broadcast loops until MAX_DEPTH.
    topology(sw, {"br0": ["p1", ("x01", "x10"), ("x02", "x20")],
                  "br1": [("x10", "x01"), ("x12", "x21")],
                  "br2": [("x21", "x12"), ("x20", "x02")]})
    before = state(sw.bridges.values())
    t = strace(sw, "br0", "p1", A, BCAST)
    assert state(sw.bridges.values()) == before
    loops = t.drops
    assert len(loops) == 2 and all(d.kind == "drop" and d.detail == (
        f"loop: the frame has crossed {MAX_DEPTH} bridges (the datapath's limit is {MAX_DEPTH})")
        for d in loops)
    assert max(s.depth for s in t.steps) == MAX_DEPTH
    # Each way round, each of the 7 bridges visited after br0 outputs to its local port, and
    # br0 (visited twice more) to p1 as well: the storm a loop makes, bounded.
    assert len(t.outputs) == 1 + 2 * (MAX_DEPTH - 1 + 2)
    assert [o.port for o in t.outputs].count("p1") == 4
    assert "drop" not in t.as_dict()["result"]
    # the datapath agrees, frame for frame, and drops the same two as "loop"
    t = strace(sw, "br0", "p1", A, BCAST, generate=True)
    assert kinds(t, "inject")[0].endswith("(as traced)")
    drops = {n: p.stats.drops for n, p in sw.ports.items() if p.stats.drops}
    assert sum(d.get("loop", 0) for d in drops.values()) == 2
    # the learned source went round and ended on a patch port: the trace's overlay follows it
    assert sw.bridge("br0").macs.lookup(0, bytes.fromhex(A.replace(":", "")), NOW).name != "p1"


def test_trace_changes_nothing_but_generate_learns_and_counts(sw):
    topology(sw, {"br0": ["p1", "p2", ("pa", "pb")], "br1": [("pb", "pa"), "p9"]})
    sw.set_port("p1", {"storm-control": "10"})
    bridges = list(sw.bridges.values())
    before = state(bridges)
    for dst in (BCAST, X, B):
        strace(sw, "br0", "p1", A, dst)
    assert state(bridges) == before and sent(sw) == {}
    strace(sw, "br0", "p1", A, X, generate=True)
    p1, p2 = sw.port("p1"), sw.port("p2")
    assert (p1.stats.rx_packets, p2.stats.tx_packets, sw.port("p9").stats.tx_packets) == (1, 1, 1)
    assert sw.bridge("br0").macs.lookup(0, bytes.fromhex(A.replace(":", "")), NOW) is p1
    assert sw.bridge("br1").macs.lookup(0, bytes.fromhex(A.replace(":", "")), NOW) is sw.port("pb")
    assert p1.storm.tokens == 9.0
    assert sw.datapath.taps == {}  # the observation taps are gone


def test_mtu_check_on_egress(sw):
    topology(sw, {"br0": ["p1", "p2", "p3"]})
    sw.set_port("p2", {"mtu": "100"})
    f = flow("p1", A, BCAST)
    small = tr.trace_switch(sw, "br0", f)
    assert "60-byte frame fits p2's limit of 118 bytes (mtu 100)" in kinds(small, "mtu")
    big = tr.build_packet(f, length=200)
    t = tr.trace_packet(sw.port("p1"), big, NOW, sw.ports, f)
    assert names(t) == ["br0", "p3"]
    assert [d.detail for d in t.drops] == ["200-byte frame too long for p2 (mtu 100)"]
    seen = tr.inject(sw.datapath, sw.ports, sw.port("p1"), big)
    assert [s["port"] for s in seen] == ["br0", "p3"] and sw.port("p2").stats.drops == {"mtu": 1}


def test_trace_switch_refusals(sw):
    topology(sw, {"br0": ["p1"], "br1": ["p9"]})
    with pytest.raises(SwitchError) as exc:
        strace(sw, "nope", "p1", A, B)
    assert exc.value.errno == errno.ENOENT and str(exc.value) == "no bridge named nope"
    with pytest.raises(SwitchError) as exc:
        strace(sw, "br0", "p9", A, B)
    assert exc.value.errno == errno.ENOENT and str(exc.value) == "no port named p9 on bridge br0"
    for values, text in (({"vlan": 4096}, "out of range"), ({"dl_src": "zz"}, "invalid MAC"),
                         ({"dl_type": 0x8100}, "use dl_vlan")):
        req = {"bridge": "br0", "port": "p1", "dl_src": A, "dl_dst": B, **values}
        with pytest.raises(SwitchError) as exc:
            tr.handle_request(sw, req)
        assert exc.value.errno == errno.EINVAL and text in str(exc.value)


def test_messages_round_trip(sw):
    topology(sw, {"br0": ["p1", ("pa", "pb")], "br1": [("pb", "pa"), "p9"]})
    t = strace(sw, "br0", "p1", A, BCAST, vlan=0)
    assert tr.from_messages(tr.to_messages(t)) == t.as_dict()


def test_step_limit():
    br, ports = make_bridge(4)
    t = tr.Tracer(NOW, max_steps=6).run(ports[0], tr.build_packet(flow("p1", A, BCAST)))
    assert len(t.steps) == 7 and t.steps[-1].detail == "trace stopped after 6 steps"


# -- the control protocol and the CLI --------------------------------------------------------


@pytest.fixture
def daemon(daemon):
    """ovslite-ctl against conftest.py's daemon, with br0 and br1 joined by patch ports."""
    daemon.now = NOW
    daemon.lt.call(topology, daemon.switch,
                   {"br0": ["p1", "p2", ("pa", "pb")], "br1": [("pb", "pa"), "p9"]})
    with structlog.testing.capture_logs():
        yield CtlRunner(daemon)


def test_cli_text(daemon):
    out = daemon("trace", "br0", "in_port=p1", f"dl_src={A}", f"dl_dst={BCAST}").stdout
    lines = out.splitlines()
    assert lines[0] == f"Flow: in_port=p1,dl_src={A},dl_dst={BCAST},dl_type=0x0800 (60-byte frame)"
    assert 'bridge("br0") from port p1' in lines and '    bridge("br1") from port pb' in lines
    assert " 1. ingress: p1 (port 2, type test-trace): up" in lines
    assert lines[-1] == "Final result: output: br0, p2, br1:br1, br1:p9 (untagged)"
    assert daemon.call(lambda: sent(daemon.switch)) == {}


def test_cli_json_is_the_trace(daemon):
    args = ["trace", "br0", f"in_port=p1,dl_src={A},dl_dst={X},dl_vlan=0"]
    data = json.loads(daemon("--format", "json", *args).stdout)
    direct = daemon.call(lambda: strace(daemon.switch, "br0", "p1", A, X, vlan=0).as_dict())
    assert data == direct
    assert data["result"] == "output: br0, p2, br1:br1, br1:p9 (untagged)"
    assert {s["kind"] for s in data["steps"]} >= {"flow", "bridge", "ingress", "vlan", "learn",
                                                  "lookup", "flood", "egress", "output", "patch"}
    assert set(data["steps"][0]) == {"kind", "bridge", "port", "depth", "detail"}
    assert data["outputs"][-1] == {"bridge": "br1", "port": "p9", "vlan": 0, "tagged": False}
    assert data["drops"] == [] and data["drop_reason"] is None and data["injected"] is False


def test_cli_drop_and_generate(daemon):
    daemon.call(daemon.switch.set_port, "p1", {"tag": "10"})
    out = daemon("trace", "br0", "in_port=p1", f"dl_src={A}", f"dl_dst={B}", "dl_vlan=30").stdout
    assert out.splitlines()[-1] == ("Final result: drop: VLAN 30 not carried by port p1 "
                                    "(access port, tag 10)")
    out = daemon("trace", "br0", "in_port=p2", f"dl_src={B}", f"dl_dst={A}", "--generate").stdout
    assert out.splitlines()[-1] == ("Injected on p2; left the switch on br0, br1:br1, br1:p9 "
                                    "(as traced)")
    fdb = daemon.call(lambda: {format_mac(k[1]): e.port.name
                               for k, e in daemon.switch.bridge("br0").macs.entries.items()})
    assert fdb == {B: "p2"}
    assert daemon.call(lambda: daemon.switch.port("p2").stats.rx_packets) == 1


@pytest.mark.parametrize("args, code, text", [
    (["nope", "in_port=p1", f"dl_src={A}", f"dl_dst={B}"], 1, "no bridge named nope"),
    (["br0", "in_port=p9", f"dl_src={A}", f"dl_dst={B}"], 1, "no port named p9 on bridge br0"),
    (["br0", "in_port=p1", "dl_src=02:00:00:00:00", f"dl_dst={B}"], 2, "dl_src: invalid MAC"),
    (["br0", "in_port=p1", f"dl_src={A}", f"dl_dst={B}", "dl_vlan=5000"], 2, "VLAN 5000 is out"),
    (["br0", f"dl_src={A}", f"dl_dst={B}"], 2, "missing field in_port="),
    (["br0", "in_port=p1", f"dl_src={A}"], 2, "missing field dl_dst="),
    (["br0", "in_port=p1", f"dl_src={A}", f"dl_dst={B}", "tp_dst=80"], 2, "unknown field 'tp_dst'"),
    (["br0", "in_port=a/b", f"dl_src={A}", f"dl_dst={B}"], 2, "port"),
    (["b" * 16, "in_port=p1", f"dl_src={A}", f"dl_dst={B}"], 2, "longer than 15"),
])
def test_cli_errors_are_one_line(daemon, args, code, text):
    result = daemon("trace", *args, code=code)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ovslite-ctl: ") and text in lines[0], lines
    assert result.stdout == ""


def test_protocol_refuses_bad_values_and_missing_attributes(daemon):
    with Client(daemon.path, 5).connect() as c:
        base = {"bridge": "br0", "port": "p1", "dl_src": A, "dl_dst": B}
        with pytest.raises(DaemonError) as exc:
            c.request(Cmd.TRACE, {**base, "vlan": 4096}, dump=True)
        assert exc.value.errno == errno.EINVAL and "out of range" in str(exc.value)
        with pytest.raises(DaemonError) as exc:
            c.request(Cmd.TRACE, {"bridge": "br0", "port": "p1", "dl_src": A}, dump=True)
        assert exc.value.errno == errno.EINVAL and "OVSLITE_ATTR_DL_DST" in str(exc.value)
        msgs = c.request(Cmd.TRACE, base, dump=True)
        assert msgs[-1]["trace_kind"] == "final" and msgs[0]["trace_kind"] == "flow"


# -- what trace shows about the core (see the report) ----------------------------------------


def test_native_port_does_not_carry_vlan_0():
    br, (p1, p2, p3) = make_bridge()  # p1: a plain trunk, e.g. the bridge's local port
    conf(p2, tag=10, vlan_mode="native-untagged")
    conf(p3, tag=10, vlan_mode="native-tagged")
    t = run(p1, A, BCAST)  # untagged: VLAN 0
    # VLAN 0 must not leave native ports: it would share the wire with native VLAN 10.
    assert t.outputs == [], t.as_dict()["result"]


def test_unicast_to_an_unreachable_port_is_counted():
    br, (p1, p2, p3) = make_bridge()
    br.macs.add_static(0, bytes.fromhex(B.replace(":", "")), p3, 0.0)
    conf(p3, admin="down")  # static entries survive the port going down
    t = run(p1, A, B)
    assert t.drop_reason == (f"destination {B} is on p3, which is unreachable: "
                             "down (administratively down)")
    assert br.forward(p1, [tr.build_packet(flow("p1", A, B))], NOW) == {}
    assert p1.stats.rx_dropped == 1 and p1.stats.drops == {"unreachable": 1}, p1.stats
