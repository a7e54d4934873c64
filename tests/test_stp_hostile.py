"""Spanning tree fed hostile BPDUs: zero and huge timers, our own ids, random fields.

Whatever a peer sends, the machines must not raise, spin or send without bound."""

from __future__ import annotations

import random

import pytest

from ovslite.stp import BridgeParams, PortParams, SpanningTree
from ovslite.stp import bpdu as B

MAC = bytes.fromhex("020000000009")
OWN_ID = (0x8000 << 48) | int.from_bytes(MAC, "big")


def random_bpdu(rng):
    kind = rng.choice([B.CONFIG, B.RST, B.TCN])
    if kind == B.TCN:
        return B.Bpdu(B.TCN)
    ids = [0, OWN_ID, OWN_ID - 1, OWN_ID + 1, rng.getrandbits(64)]
    times = [0, 1, 255, 256, 20 * 256, 0xFFFF, rng.getrandbits(16)]
    age, max_age = rng.choice(times), rng.choice(times)
    if kind == B.CONFIG and age >= max_age:
        age, max_age = 0, max(max_age, 1)
    return B.Bpdu(kind, rng.getrandbits(8), rng.choice(ids), rng.choice([0, 1, 0xFFFFFFFF]),
                  rng.choice(ids), rng.choice([0, 0x8001, 0x8002, 0xFFFF]), age, max_age,
                  rng.choice(times), rng.choice(times), 2 if kind == B.RST else 0)


@pytest.mark.parametrize("mode", ["stp", "rstp"])
def test_random_bpdus_never_break_the_machines(mode):
    rng = random.Random(14)
    stp = SpanningTree(mode, MAC, BridgeParams(), 0.0)
    for n in (1, 2, 3):
        stp.add_port(f"p{n}", n, MAC, PortParams(), True, 1000, 0.0)
    now, sent = 0.0, 0
    for i in range(3000):
        now += rng.choice([0, 0.01, 0.3, 1.0, 7.0])
        port = f"p{rng.randint(1, 3)}"
        stp.receive(port, B.encode_frame(bytes(6), random_bpdu(rng)), now)
        if i % 7 == 0:
            stp.set_link(port, rng.random() < 0.8, now)
        frames = stp.tick(now)
        sent += len(frames)
        assert stp.next_deadline() >= now or stp.next_deadline() == float("inf")
        stp.take_events()
        stp.show()
    # at most a few BPDUs per port per received one, plus the hellos
    assert sent < 3000 * 3 * 3 + now * 3


def test_a_bpdu_carrying_our_own_ids_back_does_not_make_us_our_own_root_port():
    for mode in ("stp", "rstp"):
        stp = SpanningTree(mode, MAC, BridgeParams(), 0.0)
        stp.add_port("p1", 1, MAC, PortParams(), True, 1000, 0.0)
        stp.add_port("p2", 2, MAC, PortParams(), True, 1000, 0.0)
        frames = stp.tick(2.0)
        for name, frame in frames:  # a loop between p1 and p2 outside the bridge
            stp.receive("p2" if name == "p1" else "p1", frame, 2.0)
        for t in range(3, 40):
            for name, frame in stp.tick(float(t)):
                stp.receive("p2" if name == "p1" else "p1", frame, float(t))
        assert stp.show()["root"]["is_this_bridge"]
        assert sorted([stp.forwarding("p1"), stp.forwarding("p2")]) == [False, True]


@pytest.mark.parametrize("mode", ["stp", "rstp"])
def test_largest_cost_and_age_a_peer_can_send_are_relayed_saturated(mode):
    stp = SpanningTree(mode, MAC, BridgeParams(), 0.0)
    stp.add_port("p1", 1, MAC, PortParams(), True, 1000, 0.0)
    stp.add_port("p2", 2, MAC, PortParams(), True, 1000, 0.0)
    kind = B.RST if mode == "rstp" else B.CONFIG
    # RSTP relays info whose age + 1 s is within max age (255 s at most)
    age = 0xFE00 if mode == "rstp" else 0xFF00
    worst = B.Bpdu(kind, 3 << B.ROLE_SHIFT, 1, 0xFFFFFFFF, 1, 0x8001, age, 0xFFFF, 512,
                   15 * 256, 2 if mode == "rstp" else 0)
    stp.receive("p1", B.encode_frame(bytes(6), worst), 0.5)
    assert stp.role("p1") == "root"
    relayed = [B.decode_frame(f) for name, f in stp.tick(0.5) if name == "p2"]
    assert relayed and relayed[-1].root_path_cost == 0xFFFFFFFF and relayed[-1].root_id == 1
    assert relayed[-1].message_age >= 0xFF00
