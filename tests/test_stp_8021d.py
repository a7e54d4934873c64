"""802.1D spanning tree on a fake LAN: election, blocking, failure, topology change."""

from __future__ import annotations

import pytest
from stp_lan import Lan

from ovslite.stp import BridgeParams, PortParams, SpanningTree
from ovslite.stp import bpdu as B


def triangle(priorities=(32768, 32768, 32768), mode="stp"):
    lan = Lan(mode)
    for name, mac, prio in zip("abc", (3, 1, 2), priorities, strict=True):
        lan.bridge(name, mac, prio)
    links = {"ab": lan.link("a:ab", "b:ba"), "bc": lan.link("b:bc", "c:cb"),
             "ca": lan.link("c:ca", "a:ac")}
    return lan, links


def joined_twice(mode="stp", settle=31):
    """Bridges a (root) and b joined by two links; b, and the link b's root port is on."""
    lan = Lan(mode)
    lan.bridge("a", 1)
    b = lan.bridge("b", 2)
    first = lan.link("a:p1", "b:p1")
    lan.link("a:p2", "b:p2")
    lan.run(settle)
    return lan, b, first


def test_a_lone_bridge_is_root_and_forwards_after_twice_forward_delay():
    lan = Lan()
    stp = lan.bridge("a", 1)
    lan.link("a:p1", "a:p2")  # a loop on itself: one port must block
    assert stp.state("p1") == "listening"  # designated: straight to listening
    lan.run(14.9)
    assert stp.state("p1") == "listening"
    lan.run(15.2)
    assert stp.state("p1") == "forwarding"
    lan.run(10)
    assert stp.show()["root"]["is_this_bridge"]
    assert (stp.state("p1"), stp.state("p2")) == ("forwarding", "blocking")
    assert stp.role("p2") == "alternate"


@pytest.mark.parametrize("priorities,root", [
    ((32768, 32768, 32768), "b"),  # equal priorities: lowest MAC (b has 02:..:01)
    ((4096, 32768, 32768), "a"),   # lowest priority wins over a lower MAC
    ((32768, 32768, 28672), "c"),
])
def test_triangle_elects_root_and_blocks_exactly_one_port(priorities, root):
    lan, _ = triangle(priorities)
    lan.run(40)
    root_id = lan.bridges[root].show()["bridge"]["id"]
    assert {lan.root_of(b) for b in "abc"} == {root_id}
    assert lan.bridges[root].show()["root"]["is_this_bridge"]
    blocked = lan.blocked()
    assert len(blocked) == 1 and blocked[0][0] != root
    assert lan.flooded_copies(root) == {"a": 1, "b": 1, "c": 1}
    for other in set("abc") - {root}:
        assert lan.flooded_copies(other) == {"a": 1, "b": 1, "c": 1}
        roles = {lan.bridges[other].role(p) for p in lan.bridges[other].ports()}
        assert "root" in roles


def test_two_bridges_joined_twice_block_the_higher_port_on_the_non_root():
    lan = Lan()
    a = lan.bridge("a", 1)
    b = lan.bridge("b", 2)
    lan.link("a:p1", "b:p1")
    lan.link("a:p2", "b:p2")
    lan.run(31)
    assert lan.blocked() == [("b", "p2")]
    assert (b.role("p1"), b.role("p2")) == ("root", "alternate")
    assert a.role("p1") == a.role("p2") == "designated"
    shown = b.show()
    assert shown["root_port"] == "p1" and shown["root_path_cost"] == 4
    assert shown["ports"]["p2"]["designated_bridge"] == a.show()["bridge"]["id"]
    assert shown["ports"]["p2"]["designated_port"] == "128.2"


def test_path_cost_decides_the_root_port():
    lan = Lan()
    lan.bridge("a", 1)
    b = lan.bridge("b", 2)
    lan.link("a:p1", "b:p1", speed=100)   # cost 19
    lan.link("a:p2", "b:p2", speed=10000)  # cost 2
    lan.run(31)
    assert lan.blocked() == [("b", "p1")]
    assert b.show()["root_path_cost"] == 2


def test_detected_link_failure_recovers_in_twice_forward_delay():
    lan, b, first = joined_twice()
    lan.set_up(first, False)
    took = lan.run_until(lambda: b.forwarding("p2"), 60)
    assert 29.9 <= took <= 30.3
    assert b.role("p2") == "root" and b.state("p1") == "disabled"


def test_silent_failure_recovers_after_max_age_and_twice_forward_delay():
    lan, b, first = joined_twice()
    first.up = False  # frames stop, but no bridge sees the link go down
    took = lan.run_until(lambda: b.forwarding("p2"), 80)
    # the info on p2 ages out at most max age after the last hello
    assert 20 + 30 - 2 <= took <= 20 + 30 + 0.2
    assert b.role("p2") == "root"


def test_recovery_when_the_link_comes_back_unblocks_it_again():
    lan, links = triangle()
    lan.run(40)
    (blocked_bridge, blocked_port), = lan.blocked()
    lan.set_up(links["ab"], False)  # b is root: cut one of its links
    lan.run(60)
    assert lan.blocked() == [("a", "ab"), ("b", "ba")]  # only the ends of the cut link
    assert lan.flooded_copies("b") == {"a": 1, "b": 1, "c": 1}
    lan.set_up(links["ab"], True)
    lan.run(60)
    assert lan.blocked() == [(blocked_bridge, blocked_port)]


def test_topology_change_is_notified_acknowledged_and_ages_macs_fast():
    lan = Lan()
    lan.bridge("a", 1)
    lan.bridge("b", 2)
    c = lan.bridge("c", 3)
    lan.link("a:p1", "b:p1")
    lan.link("b:p2", "c:p1")
    lan.run(31)
    lan.run(40)  # let the start-up topology change end everywhere
    for name in "abc":
        lan.events[name].clear()
    lan.sent.clear()
    # a new port on c becomes forwarding: c (not root) detects a topology change
    edge = lan.link("c:p2")
    lan.run(33)  # forwarding after 30 s, TCN, then the root's next hello carries TC
    assert c.forwarding("p2")
    assert [e for e in lan.events["c"] if e["event"] == "topology-change"]
    # the TCN goes up to b, b acknowledges it and relays its own TCN to the root a
    assert B.decode_frame(lan.sent[("c", "p1")][0]).kind == B.TCN
    tcns_from_b = [f for f in lan.sent[("b", "p1")] if B.decode_frame(f).kind == B.TCN]
    assert tcns_from_b
    acks_to_c = [B.decode_frame(f) for f in lan.sent[("b", "p2")]]
    assert any(x.flags & B.FLAG_TC_ACK for x in acks_to_c)
    # c stopped sending TCNs once acknowledged
    assert sum(B.decode_frame(f).kind == B.TCN for f in lan.sent[("c", "p1")]) == 1
    # every bridge ages its MAC table in forward delay while the root says TC
    for name in "abc":
        assert {"event": "fast-aging", "seconds": 15} in lan.events[name]
    lan.run(35)  # topology change time = max age + forward delay = 35 s
    for name in "abc":
        kinds = [e["event"] for e in lan.events[name] if "aging" in e["event"]]
        assert kinds == ["fast-aging", "normal-aging"]
    assert edge.up


def test_state_and_role_events():
    lan = Lan()
    lan.bridge("a", 1)
    b = lan.bridge("b", 2)
    lan.link("a:p1", "b:p1")
    lan.run(31)
    states = [(e["old"], e["new"]) for e in lan.events["b"]
              if e["event"] == "stp-state" and e["port"] == "p1"]
    assert states == [("disabled", "listening"),
                      ("listening", "learning"), ("learning", "forwarding")]
    roles = [e["new"] for e in lan.events["b"] if e["event"] == "stp-role"]
    assert roles[-1] == "root"
    assert b.take_events() == []  # lan took them


def test_priority_change_moves_the_root():
    lan = Lan()
    a = lan.bridge("a", 1)
    b = lan.bridge("b", 2)
    lan.link("a:p1", "b:p1")
    lan.run(31)
    assert a.show()["root"]["is_this_bridge"]
    b.set_params(BridgeParams(priority=4096), lan.now)
    lan.run(35)
    assert a.show()["root"]["id"] == b.show()["bridge"]["id"] == "1000.020000000002"
    assert a.role("p1") == "root" and b.role("p1") == "designated"
    assert a.forwarding("p1") and b.forwarding("p1")


def test_port_with_stp_disabled_forwards_and_sends_nothing():
    lan = Lan()
    a = lan.bridge("a", 1)
    lan.link("a:p1", enabled=False)
    assert a.forwarding("p1") and a.learning("p1") and a.state("p1") == "disabled"
    lan.run(10)
    assert ("a", "p1") not in lan.sent


def test_link_down_port_neither_forwards_nor_learns():
    stp = SpanningTree("stp", bytes(6), BridgeParams(), 0.0)
    stp.add_port("p1", 1, bytes(6), PortParams(), False, None, 0.0)
    assert not stp.forwarding("p1") and not stp.learning("p1")
    stp.set_link("p1", True, 1.0)
    assert stp.state("p1") == "listening" and not stp.learning("p1")
    assert stp.tick(1.0) == [] and stp.next_deadline() == 2.0  # the next hello
    assert B.decode_frame(stp.tick(2.0)[0][1]).kind == B.CONFIG
    stp.remove_port("p1", 2.0)
    assert stp.ports() == []


def test_learning_state_learns_but_does_not_forward():
    lan = Lan()
    a = lan.bridge("a", 1)
    lan.link("a:p1")
    lan.run(15.5)
    assert a.state("p1") == "learning"
    assert a.learning("p1") and not a.forwarding("p1")


def test_hello_time_paces_bpdus_and_next_deadline_says_when():
    lan = Lan(hello_time=1, max_age=6, forward_delay=4)
    a = lan.bridge("a", 1)
    lan.link("a:p1")
    lan.run(10)
    assert 10 <= len(lan.sent[("a", "p1")]) <= 11
    assert a.next_deadline() <= lan.now + 1
    assert B.decode_frame(lan.sent[("a", "p1")][0]).hello_time == 256


def test_bad_parameters_are_refused_with_one_line():
    with pytest.raises(ValueError, match="stp-max-age must be an integer from 6 to 40"):
        SpanningTree("stp", bytes(6), BridgeParams(max_age=41), 0.0)
    with pytest.raises(ValueError, match="rstp-priority .* steps of 4096"):
        BridgeParams(priority=100).check("rstp")
    with pytest.raises(ValueError, match="802.1D port numbers are 1-255"):
        SpanningTree("stp", bytes(6), BridgeParams(), 0.0).add_port(
            "p", 256, bytes(6), PortParams(), True, None, 0.0)
    with pytest.raises(ValueError, match="stp or rstp"):
        SpanningTree("mstp", bytes(6), BridgeParams(), 0.0)


def test_message_age_grows_by_1_256_s_per_bridge_as_linux_and_ovs():
    lan = Lan()
    lan.bridge("a", 1)
    lan.bridge("b", 2)
    lan.bridge("c", 3)
    lan.link("a:p1", "b:p1")
    lan.link("b:p2", "c:p1")
    lan.run(5)
    from_root = B.decode_frame(lan.sent[("a", "p1")][-1])
    relayed = B.decode_frame(lan.sent[("b", "p2")][-1])
    assert from_root.message_age == 0
    assert relayed.message_age == 1  # relayed the instant it arrived: 1/256 s
    assert relayed.root_id == from_root.root_id and relayed.root_path_cost == 4


@pytest.mark.parametrize("mode", ["stp", "rstp"])
def test_the_roots_new_timers_reach_the_other_bridges(mode):
    lan = Lan(mode)
    a = lan.bridge("a", 1)
    b = lan.bridge("b", 2)
    lan.link("a:p1", "b:p1")
    lan.run(40)
    a.set_params(BridgeParams(hello_time=1, max_age=10, forward_delay=6), lan.now)
    lan.run(4)
    relayed = B.decode_frame(lan.sent[("a", "p1")][-1])
    assert (relayed.hello_time, relayed.max_age, relayed.forward_delay) == (256, 2560, 1536)
    shown = b.show()
    assert (shown["max_age"], shown["forward_delay"]) == (10, 6)
