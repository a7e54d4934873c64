"""The datapath's flow cache (ovslite.flows) against the slow path it stands in for.

The model test runs the same random life (frames, MAC moves, aging, a small
table that evicts, port settings, static entries, flushes; frames the bridge
must drop: zero, multicast and own-address sources, VLAN 4095, reserved group
addresses, with forward_bpdu toggled and internal MACs changed) through two
switches: one receives with `Datapath.receive` (flows), the other with
`Datapath.input` alone. Frames come one per batch, so the two must agree
exactly: on every frame sent, every counter and every MAC table entry.
"""

from __future__ import annotations

import random

import pytest
from helpers import TYPE, Sink

from ovslite import flows
from ovslite.bridge import Bridge, Port
from ovslite.datapath import Datapath
from ovslite.db import ConfigDB
from ovslite.flows import FLOW_LIMIT, MAX_DEPTH, SETUPS_PER_BATCH, FlowCache
from ovslite.switch import Switch, SwitchError
from ovslite.vnet import ethernet, push_tag

MACS = [bytes.fromhex(f"0200000000{i:02x}") for i in range(1, 7)]
BCAST = b"\xff" * 6
#: frames the bridges drop (or flood, for LLDP with forward_bpdu) and never learn from
BAD_SOURCES = [bytes(6), bytes.fromhex("01005e000001"), BCAST]
LLDP = bytes.fromhex("0180c200000e")
INTERNAL = ["br0", "br1", "br2"]
HOME_MAC = {b: bytes.fromhex(f"02bb000000{i:02x}") for i, b in enumerate(INTERNAL)}
EDGE = ["e0", "e1", "e2", "e3", "e4"]
HOME = {mac: EDGE[i % len(EDGE)] for i, mac in enumerate(MACS)}
DEFAULTS = {"tag": "", "trunks": "", "admin": "up", "mtu": "", "learning": "on"}
#: br0 -[pa0|pb0]- br1 -[pa1|pb1]- br2
SPEC = {"br0": ["e0", "e1", ("pa0", "pb0")],
        "br1": [("pb0", "pa0"), "e2", ("pa1", "pb1")],
        "br2": [("pb1", "pa1"), "e3", "e4"]}


class World:
    def __init__(self, path, spec=SPEC):
        self.now = 1000.0
        self.sw = Switch(ConfigDB(str(path)), Datapath(None, clock=lambda: self.now))
        self.sw.load()
        for bridge, ports in spec.items():
            self.sw.add_bridge(bridge)
            internal = self.sw.ports[bridge]
            internal.netdev.mac = HOME_MAC.get(bridge, internal.netdev.mac)
            self.sw.set_state(internal, True)
            for p in ports:
                if isinstance(p, tuple):
                    self.sw.add_port(bridge, p[0], "patch", {"peer": p[1]})
                else:
                    self.sw.add_port(bridge, p, TYPE)

    @property
    def dp(self) -> Datapath:
        return self.sw.datapath

    def port(self, name: str) -> Port:
        return self.sw.ports[name]

    def state(self) -> dict:
        sw = self.sw
        return {
            "sent": {n: list(p.netdev.sent) for n, p in sw.ports.items() if hasattr(p.netdev, "sent")},
            "stats": {n: (p.stats.as_dict(), dict(p.stats.drops)) for n, p in sw.ports.items()},
            "fdb": {b: {k: (e.port.name, e.used, e.static) for k, e in br.macs.entries.items()}
                    for b, br in sw.bridges.items()},
        }


@pytest.fixture
def world(tmp_path, fake_internal):
    w = World(tmp_path / "conf.db")
    yield w
    w.sw.shutdown()


def set_aging(w: World, seconds: int) -> None:
    for br in ("br0", "br1", "br2"):
        w.sw.set_bridge(br, {"mac-aging-time": str(seconds)})


@pytest.fixture
def worlds(tmp_path, fake_internal):
    cached, reference = World(tmp_path / "a.db"), World(tmp_path / "b.db")
    yield cached, reference
    cached.sw.shutdown()
    reference.sw.shutdown()


def frame(dst: bytes, src: bytes, vlan: int | None = None, size: int = 46) -> bytes:
    pkt = ethernet(dst + src + b"\x08\x00" + bytes(size))
    return push_tag(pkt, vlan) if vlan is not None else pkt


def random_op(rng: random.Random, w: tuple[World, World], traffic_only: bool = False) -> None:
    cached, reference = w
    roll = rng.random() * (0.96 if traffic_only else 1.0)
    if roll < 0.88:
        src = rng.choice(MACS)
        # Hosts mostly stay at home (so flows get set up and hit), sometimes move.
        port = HOME[src] if rng.random() < 0.95 else rng.choice(EDGE)
        dst = rng.choice(MACS + [BCAST])
        vlan = rng.choice([None] * 8 + [10, 20])
        odd = rng.random()
        if odd < 0.08:  # one field of the frame made odd: what the bridges must drop, mostly
            own = [cached.port(b).netdev.mac for b in INTERNAL]  # alike in both worlds
            i = rng.randrange(len(INTERNAL))
            if odd < 0.03:  # a bridge's own host, or a spoof of it
                src, port = own[i], rng.choice([INTERNAL[i], *EDGE])
            elif odd < 0.04:
                src = rng.choice(BAD_SOURCES)
            elif odd < 0.06:
                dst = rng.choice([own[i], LLDP])
            else:
                vlan = rng.choice([0, 4095])
        pkt = frame(dst, src, vlan, rng.choice([46, 46, 46, 200, 1]))
        # An odd frame comes twice: a flow the first wrongly set up, the second would hit.
        for _ in range(2 if odd < 0.08 else 1):
            cached.dp.receive(cached.port(port), [pkt])
            reference.dp.input(reference.port(port), [pkt], 0)
        return
    if roll < 0.96:
        step = rng.choice([0.5, 1.0, 3.0, 6.0])
        timers = rng.random() < 0.5
        for x in w:
            x.now += step
            if timers:
                x.sw.run_timers(x.now)
        return
    port = rng.choice(EDGE + ["pa0", "pb1"])
    change = rng.choice([
        ("set", {"tag": "10"}), ("set", {"tag": ""}), ("set", {"trunks": "10"}),
        ("set", {"trunks": ""}), ("set", {"admin": "down"}), ("set", {"admin": "up"}),
        ("set", {"learning": "off"}), ("set", {"learning": "on"}), ("set", {"mtu": "1000"}),
        ("set", {"mtu": ""}), ("fdb-add", None), ("fdb-del", None), ("flush", None),
        ("forward-bpdu", None), ("local-mac", None),
        *[("set", DEFAULTS)] * 6,  # mostly back to plain ports, so flows get set up and hit
    ])
    mac = rng.choice(MACS)
    # an internal port's new address: mostly a fresh one, sometimes a host's
    local = rng.choice([bytes.fromhex("02bb000000ff"), mac]) if change[0] == "local-mac" else None
    for x in w:
        sw = x.sw
        owner = sw.ports[port].bridge.name
        if change[0] == "set":
            try:
                sw.set_port(port, change[1])
            except SwitchError:  # refused alike in both worlds (trunks on an access port)
                pass
        elif change[0] == "fdb-add":
            sw.fdb_add(owner, mac, port)
        elif change[0] == "forward-bpdu":
            br = sw.bridges[owner]
            br.forward_bpdu = not br.forward_bpdu
        elif change[0] == "local-mac":  # `ip link set dev brN address ...`, then its link event
            internal = sw.ports[owner]
            internal.netdev.mac = local if internal.netdev.mac != local else HOME_MAC[owner]
            sw.set_state(internal, True)
        elif change[0] == "fdb-del":
            entry = sw.bridges[owner].macs.entries.get((0, mac))
            if entry is not None:
                sw.fdb_del(owner, mac)
        else:
            sw.fdb_flush(owner)


@pytest.mark.parametrize("seed", range(12))
def test_flows_agree_with_the_slow_path(worlds, seed):
    rng = random.Random(seed)
    for x in worlds:
        for br in ("br0", "br1", "br2"):
            x.sw.set_bridge(br, {"mac-aging-time": "5", "mac-table-size": str((5, 8, 16)[seed % 3])})
    cached, reference = worlds
    for i in range(1500):
        random_op(rng, worlds)
        assert cached.state() == reference.state(), f"seed {seed}: differs after step {i}"
    for x in worlds:  # then plain ports and only traffic and time, where flows live long
        for port in EDGE + ["pa0", "pb1"]:
            x.sw.set_port(port, DEFAULTS)
        for br in ("br0", "br1", "br2"):  # room for every host (each bridge's own too)
            x.sw.set_bridge(br, {"mac-table-size": "16"})
        for b in INTERNAL:
            x.port(b).netdev.mac = HOME_MAC[b]
            x.sw.set_state(x.port(b), True)
    for i in range(400):
        random_op(rng, worlds, traffic_only=True)
        assert cached.state() == reference.state(), f"seed {seed}: differs after step {1500 + i}"
    assert cached.dp.flows.hits > 10  # the cache was really used, not bypassed


def settle(w: World) -> tuple[bytes, bytes]:
    """A on e0, B on e4 (across br0 -> br1 -> br2), each learned everywhere."""
    a, b = MACS[0], MACS[1]
    w.dp.receive(w.port("e0"), [frame(BCAST, a)])
    w.dp.receive(w.port("e4"), [frame(a, b)])
    return frame(b, a), frame(a, b)


def test_a_flow_crosses_patch_ports_and_counts_like_the_slow_path(world):
    w = world
    ab, _ = settle(w)
    w.dp.receive(w.port("e0"), [ab])  # slow path, then the flow is set up
    hits = w.dp.flows.hits
    w.dp.receive(w.port("e0"), [ab, ab, ab])
    assert w.dp.flows.hits == hits + 3
    assert w.port("e4").netdev.sent[-4:] == [ab] * 4
    for a, b in (("pa0", "pb0"), ("pa1", "pb1")):
        # the broadcast, the slow one, 3 cached; and B's reply the other way
        assert (w.port(a).stats.tx_packets, w.port(b).stats.rx_packets) == (5, 5)
        assert (w.port(b).stats.tx_packets, w.port(a).stats.rx_packets) == (1, 1)
    assert w.port("e0").stats.rx_packets == 5


def test_a_moved_mac_is_followed_at_once(world):
    w = world
    ab, _ = settle(w)
    w.dp.receive(w.port("e0"), [ab])
    w.dp.receive(w.port("e0"), [ab])
    w.dp.receive(w.port("e3"), [frame(MACS[0], MACS[1])])  # B moves from e4 to e3
    w.dp.receive(w.port("e0"), [ab])
    assert w.port("e3").netdev.sent[-1] == ab
    assert w.port("e4").netdev.sent.count(ab) == 2


def test_an_aged_destination_is_flooded_again(world):
    w = world
    set_aging(w, 10)
    ab, _ = settle(w)
    w.dp.receive(w.port("e0"), [ab])
    w.now += 11  # B said nothing since; no timer ran: the flow itself must notice
    w.dp.receive(w.port("e0"), [ab])
    assert w.port("e1").netdev.sent[-1] == ab  # flooded on br0
    assert w.port("e3").netdev.sent[-1] == ab  # and on br2


def test_hits_keep_the_source_learned(world):
    w = world
    set_aging(w, 10)
    ab, ba = settle(w)
    w.dp.receive(w.port("e0"), [ab])
    w.dp.receive(w.port("e4"), [ba])
    for _ in range(5):  # 20 s of traffic both ways, all of it cached
        w.now += 4
        w.dp.receive(w.port("e0"), [ab])
        w.dp.receive(w.port("e4"), [ba])
        w.sw.run_timers(w.now)
    for br in w.sw.bridges.values():
        assert br.macs.get(0, MACS[0]).used == w.now
    assert w.dp.flows.hits == 11  # and B's first reply, whose flow settle() set up


def test_a_capture_anywhere_turns_the_cache_off(world):
    w = world
    ab, _ = settle(w)
    w.dp.receive(w.port("e0"), [ab])
    seen = []
    w.dp.taps[w.port("pb0")] = [lambda direction, packets: seen.extend(packets)]
    hits = w.dp.flows.hits
    w.dp.receive(w.port("e0"), [ab])
    assert w.dp.flows.hits == hits and seen == [ab]


def test_port_state_changes_invalidate_flows_without_a_reconcile():
    br = Bridge("br0")
    a, b = Port("a"), Port("b")

    for p in (a, b):
        p.netdev = Sink()
        br.add_port(p)
        br.set_port_state(p, True)
    now = [5.0]
    dp = Datapath(None, clock=lambda: now[0])
    dp.receive(b, [frame(MACS[0], MACS[1])])
    ab = frame(MACS[1], MACS[0])
    dp.receive(a, [ab])
    dp.receive(a, [ab])
    assert dp.flows.hits == 1
    br.set_port_state(b, False, "carrier lost")
    dp.receive(a, [ab])
    assert len(b.netdev.sent) == 2  # the third frame met a port that is down
    assert a.stats.drops == {} and b.stats.tx_packets == 2


def test_a_full_cache_starts_over(monkeypatch):
    monkeypatch.setattr(flows, "set_up", lambda port, pkt, now: object())
    cache = FlowCache()
    packets = [frame(MACS[0], (i + 1).to_bytes(6, "big")) for i in range(FLOW_LIMIT + 1)]
    for i in range(0, len(packets), SETUPS_PER_BATCH):
        cache.learn("p", packets[i:i + 2 * SETUPS_PER_BATCH], 0.0)  # half of each seen before
    assert len(cache) == 1  # the last flow found the cache full
    cache.forget_port("p")
    assert len(cache) == 0


def test_chains_longer_than_a_pass_are_not_cached(tmp_path, fake_internal):
    names = [f"c{i}" for i in range(MAX_DEPTH + 1)]
    spec = {}
    for i, br in enumerate(names):
        ports = []
        if i:
            ports.append((f"l{i}", f"r{i - 1}"))
        if i < len(names) - 1:
            ports.append((f"r{i}", f"l{i + 1}"))
        spec[br] = ports
    spec[names[0]].append("e0")
    spec[names[-1]].append("e4")
    w = World(tmp_path / "h.db", spec)
    b = MACS[1]
    for i, br in enumerate(names):  # B is known on every bridge, so only the depth stops it
        w.sw.fdb_add(br, b, f"r{i}" if i < len(names) - 1 else "e4")
    for _ in range(3):
        w.dp.receive(w.port("e0"), [frame(b, MACS[0])])
    assert w.dp.flows.hits == 0 and w.port("e4").netdev.sent == []
    assert w.port(f"l{MAX_DEPTH}").stats.drops == {"loop": 3}
    w.sw.shutdown()
