"""Bridge.forward: flooding, unicast, filtering, learning, port state, stats."""

import pytest
from helpers import BCAST, MCAST, A, B, C, X, make_bridge

from ovslite.bridge import DEFAULT_VLAN, Bridge, Port, PortStats
from ovslite.vnet import ethernet


def pkt(dst: bytes, src: bytes, payload: bytes = b"") -> bytes:
    return ethernet(dst + src + b"\x08\x00" + payload)


def fwd(br: Bridge, port: Port, packets: list, now: float = 0.0) -> dict[str, list]:
    """forward() with outputs keyed by port name, for readable assertions."""
    out = br.forward(port, packets, now)
    assert all(isinstance(p, Port) for p in out)
    return {p.name: batch for p, batch in out.items()}


def learn(br: Bridge, port: Port, src: bytes, now: float = 0.0) -> None:
    br.forward(port, [pkt(BCAST, src)], now)


# -- flooding and unicast --------------------------------------------------------


@pytest.mark.parametrize("dst", [BCAST, MCAST, X], ids=["broadcast", "multicast", "unknown"])
def test_floods_to_every_up_port_but_ingress(dst):
    br, (p1, p2, p3) = make_bridge()
    p = pkt(dst, A)
    assert fwd(br, p1, [p]) == {"p2": [p], "p3": [p]}


def test_known_unicast_goes_to_exactly_one_port():
    br, (p1, p2, p3) = make_bridge()
    learn(br, p2, B)
    p = pkt(B, A)
    assert fwd(br, p1, [p]) == {"p2": [p]}


def test_destination_behind_ingress_port_is_filtered():
    br, (p1, p2, p3) = make_bridge()
    learn(br, p1, B)
    assert fwd(br, p1, [pkt(B, A)]) == {}


def test_static_destination_on_ingress_port_is_filtered():
    br, (p1, p2, p3) = make_bridge()
    br.macs.add_static(DEFAULT_VLAN, B, p1, 0)
    assert fwd(br, p1, [pkt(B, A)]) == {}


def test_group_source_is_never_learned():
    br, (p1, p2, p3) = make_bridge()
    fwd(br, p1, [pkt(BCAST, MCAST), pkt(BCAST, BCAST)])
    assert len(br.macs) == 0
    p = pkt(MCAST, A)
    assert set(fwd(br, p2, [p])) == {"p1", "p3"}


def test_mac_move_redirects_unicast():
    br, (p1, p2, p3) = make_bridge()
    learn(br, p2, B, 0)
    learn(br, p3, B, 1)
    assert set(fwd(br, p1, [pkt(B, A)], 1)) == {"p3"}
    assert br.macs.stats.moved == 1


# -- runts -----------------------------------------------------------------------


def test_runts_are_dropped_and_counted():
    br, (p1, p2, p3) = make_bridge()
    good = pkt(BCAST, A)
    assert len(good) == 24  # the minimum: vnet header + Ethernet header
    runts = [good[:23], good[:10], b""]
    out = fwd(br, p1, [runts[0], good, runts[1], runts[2]])
    assert out == {"p2": [good], "p3": [good]}
    assert p1.stats.rx_dropped == 3
    assert p1.stats.drops == {"runt": 3}
    assert p1.stats.tx_dropped == 0


def test_runt_only_batch_forwards_nothing():
    br, (p1, p2, p3) = make_bridge()
    assert fwd(br, p1, [pkt(BCAST, A)[:20]]) == {}
    assert p1.stats.drops == {"runt": 1}
    assert len(br.macs) == 0


# -- port state ------------------------------------------------------------------


def test_new_port_is_down_and_gets_no_flood():
    br, (p1, p2, p3) = make_bridge()
    p4 = br.add_port(Port("p4"))
    assert not p4.up
    assert set(fwd(br, p1, [pkt(BCAST, A)])) == {"p2", "p3"}


def test_down_port_gets_no_flood_and_comes_back_when_up():
    br, (p1, p2, p3) = make_bridge()
    assert br.set_port_state(p3, False, "carrier lost") is True
    assert (p3.up, p3.reason) == (False, "carrier lost")
    assert set(fwd(br, p1, [pkt(BCAST, A)])) == {"p2"}
    assert br.set_port_state(p3, True) is True
    assert p3.reason == ""
    assert set(fwd(br, p1, [pkt(BCAST, A)])) == {"p2", "p3"}


def test_set_port_state_reports_no_change():
    br, (p1, p2, p3) = make_bridge()
    assert br.set_port_state(p1, True) is False
    br.set_port_state(p1, False, "x")
    assert br.set_port_state(p1, False, "x") is False
    assert br.set_port_state(p1, False, "y") is True and p1.reason == "y"


def test_reason_given_for_up_port_is_not_a_change():
    # An up port's reason is always "": passing one must not report a change.
    br, (p1, p2, p3) = make_bridge()
    assert br.set_port_state(p1, True, "carrier ok") is False
    assert p1.reason == ""


def test_going_down_flushes_learned_macs():
    br, (p1, p2, p3) = make_bridge()
    learn(br, p2, B)
    learn(br, p3, C)
    br.set_port_state(p2, False, "down")
    assert br.macs.lookup(DEFAULT_VLAN, B, 0) is None
    assert br.macs.lookup(DEFAULT_VLAN, C, 0) is p3
    br.set_port_state(p2, True)
    # B is unknown now: flooded, including to p2 again
    assert set(fwd(br, p1, [pkt(B, A)])) == {"p2", "p3"}


def test_down_port_gets_no_unicast():
    br, (p1, p2, p3) = make_bridge()
    br.macs.add_static(DEFAULT_VLAN, B, p2, 0)  # statics survive going down
    br.set_port_state(p2, False, "down")
    assert fwd(br, p1, [pkt(B, A)]) == {}


def test_down_ingress_drops_batch():
    br, (p1, p2, p3) = make_bridge()
    br.set_port_state(p1, False, "down")
    assert fwd(br, p1, [pkt(BCAST, A), pkt(B, A), b"x"]) == {}
    assert p1.stats.rx_dropped == 3
    assert p1.stats.drops == {"port-down": 3}
    assert len(br.macs) == 0


def test_removed_port_forgets_macs_and_gets_nothing():
    br, (p1, p2, p3) = make_bridge()
    learn(br, p2, B)
    br.macs.add_static(DEFAULT_VLAN, C, p2, 0)
    assert br.remove_port("p2") is p2
    assert p2.bridge is None and "p2" not in br.ports
    assert len(br.macs) == 0
    assert set(fwd(br, p1, [pkt(B, A), pkt(C, A), pkt(BCAST, A)])) == {"p3"}


def test_duplicate_port_name_refused():
    br, _ = make_bridge()
    with pytest.raises(ValueError):
        br.add_port(Port("p1"))


def test_port_numbers_are_not_reused():
    br, (p1, p2, p3) = make_bridge()
    br.remove_port("p3")
    assert (p1.number, p2.number, br.add_port(Port("p4")).number) == (1, 2, 4)


# -- learning within a batch -----------------------------------------------------


def test_learns_every_distinct_source_in_a_batch():
    br, (p1, p2, p3) = make_bridge()
    fwd(br, p1, [pkt(BCAST, A), pkt(BCAST, A), pkt(BCAST, B), pkt(BCAST, C)])
    for mac in (A, B, C):
        assert br.macs.lookup(DEFAULT_VLAN, mac, 0) is p1


def test_alternating_sources_in_one_batch():
    br, (p1, p2, p3) = make_bridge()
    learn(br, p2, A, 0)
    learn(br, p2, B, 0)
    # Both hosts move to p1; frames alternate A, B, A in one batch.
    fwd(br, p1, [pkt(X, A), pkt(X, B), pkt(X, A)], 1)
    assert br.macs.lookup(DEFAULT_VLAN, A, 1) is p1
    assert br.macs.lookup(DEFAULT_VLAN, B, 1) is p1
    assert fwd(br, p3, [pkt(A, C), pkt(B, C)], 1) == {"p1": [pkt(A, C), pkt(B, C)]}


def test_learning_refreshes_each_batch():
    br, (p1, p2, p3) = make_bridge(aging=10)
    learn(br, p2, B, 0)
    learn(br, p2, B, 8)
    assert set(fwd(br, p1, [pkt(B, A)], 15)) == {"p2"}


def test_aged_entry_floods_again():
    br, (p1, p2, p3) = make_bridge(aging=10)
    learn(br, p2, B, 0)
    assert set(fwd(br, p1, [pkt(B, A)], 10)) == {"p2"}  # exactly `aging` old
    assert set(fwd(br, p1, [pkt(B, A)], 10.5)) == {"p2", "p3"}  # before expire()


def test_output_batches_keep_input_order():
    br, (p1, p2, p3) = make_bridge()
    learn(br, p2, B)
    learn(br, p3, C)
    batch = [
        pkt(B, A, b"1"),
        pkt(BCAST, A, b"2"),
        pkt(C, A, b"3"),
        pkt(B, A, b"4"),
        pkt(X, A, b"5"),
    ]
    out = fwd(br, p1, batch)
    assert out["p2"] == [batch[0], batch[1], batch[3], batch[4]]
    assert out["p3"] == [batch[1], batch[2], batch[4]]


# -- stats -----------------------------------------------------------------------


def test_port_stats_drop_and_as_dict():
    s = PortStats()
    s.drop("runt", 2)
    s.drop("tx-failed", 3, tx=True)
    s.drop("runt")
    assert (s.rx_dropped, s.tx_dropped) == (3, 3)
    assert s.drops == {"runt": 3, "tx-failed": 3}
    d = s.as_dict()
    assert "drops" not in d and d["rx_dropped"] == 3 and d["tx_packets"] == 0
