"""RSTP on a fake LAN: roles, proposal/agreement, edge ports, failover, flushes, fallback."""

from __future__ import annotations

import pytest
from stp_lan import Lan
from test_stp_8021d import joined_twice, triangle

from ovslite.stp import BridgeParams, PortParams
from ovslite.stp import bpdu as B


def kinds(lan, bname, pname):
    return [B.decode_frame(f).kind for f in lan.sent.get((bname, pname), [])]


@pytest.mark.parametrize("priorities,root", [
    ((32768, 32768, 32768), "b"), ((4096, 32768, 32768), "a"), ((32768, 32768, 28672), "c")])
def test_triangle_converges_at_once_with_one_alternate_port(priorities, root):
    lan, _ = triangle(priorities, mode="rstp")
    took = lan.run_until(lambda: len(lan.blocked()) == 1 and all(
        lan.bridges[b].state(p) in ("forwarding", "discarding")
        for b, p in [(b, p) for b in "abc" for p in lan.bridges[b].ports()]), 5)
    lan.run(10)  # and it stays so
    assert took < 1  # proposal/agreement: no forward delay on point-to-point links
    (bname, pname), = lan.blocked()
    assert bname != root and lan.bridges[bname].role(pname) == "alternate"
    assert {lan.root_of(b) for b in "abc"} == {lan.bridges[root].show()["bridge"]["id"]}
    for origin in "abc":
        assert lan.flooded_copies(origin) == {"a": 1, "b": 1, "c": 1}


def test_rst_bpdus_on_the_wire_carry_role_and_state():
    lan, b, _ = joined_twice("rstp", settle=5)
    frames = lan.sent[("a", "p1")]
    assert all(len(f) == 14 + 3 + 36 for f in frames)
    last = B.decode_frame(frames[-1])
    assert last.kind == B.RST and last.version == 2 and last.role == "designated"
    assert last.flags & B.FLAG_FORWARDING and last.flags & B.FLAG_LEARNING
    assert (last.max_age, last.hello_time, last.forward_delay) == (20 * 256, 512, 15 * 256)
    from_alternate = B.decode_frame(lan.sent[("b", "p2")][-1])
    assert from_alternate.role == "alternate" and not from_alternate.flags & B.FLAG_FORWARDING
    assert B.decode_frame(lan.sent[("b", "p1")][-1]).message_age == 256  # one hop: 1 s
    assert b.show()["ports"]["p2"]["protocol"] == "rstp"


def test_detected_failure_of_the_root_port_fails_over_at_once():
    lan, b, first = joined_twice("rstp", settle=10)
    assert lan.blocked() == [("b", "p2")]
    lan.set_up(first, False)
    took = lan.run_until(lambda: b.forwarding("p2"), 10, step=0.01)
    assert took == 0  # the alternate port becomes root port and forwards in the same call
    assert b.role("p2") == "root"


def test_silent_failure_fails_over_when_the_info_ages_in_three_hellos():
    lan, b, first = joined_twice("rstp", settle=10)
    first.up = False
    took = lan.run_until(lambda: b.forwarding("p2"), 20)
    assert 4 <= took <= 6.1  # rcvdInfoWhile = 3 * hello after the last BPDU
    assert b.role("p2") == "root"


def test_failover_on_a_triangle_then_back():
    lan, links = triangle(mode="rstp")
    lan.run(5)
    blocked = lan.blocked()
    lan.set_up(links["ab"], False)
    took = lan.run_until(lambda: lan.blocked() == [("a", "ab"), ("b", "ba")], 10, step=0.05)
    assert took < 0.5
    assert lan.flooded_copies("b") == {"a": 1, "b": 1, "c": 1}
    lan.set_up(links["ab"], True)
    took = lan.run_until(lambda: lan.blocked() == blocked, 10, step=0.05)
    assert took < 0.5


def test_topology_change_flushes_the_other_ports_on_every_bridge():
    lan, links = triangle(mode="rstp")
    lan.run(10)
    for name in "abc":
        lan.events[name].clear()
    lan.set_up(links["ab"], False)  # a's alternate port (ac) becomes its root port
    lan.run(1)
    flushed = {name: {p for e in lan.events[name] if e["event"] == "flush" for p in e["ports"]}
               for name in "abc"}
    # a detects the change on its new root port and flushes its other ports; c learns of
    # it by the TC flag and flushes the ports other than the one it came in on
    assert "ac" not in flushed["a"] and flushed["a"]
    assert flushed["c"] == {"cb"}
    assert any(e["event"] == "topology-change" for e in lan.events["a"])
    assert not any(e["event"] in ("fast-aging", "normal-aging")
                   for name in "abc" for e in lan.events[name])
    tc = [B.decode_frame(f) for f in lan.sent[("a", "ac")]]
    assert any(x.flags & B.FLAG_TC for x in tc)


def test_port_without_a_peer_becomes_edge_and_forwards_after_edge_delay():
    lan = Lan("rstp")
    a = lan.bridge("a", 1)
    lan.link("a:host")
    lan.run(2.9)
    assert a.state("host") == "discarding"
    took = lan.run_until(lambda: a.forwarding("host"), 30)
    assert took <= 3.1 and a.show()["ports"]["host"]["edge"]


def test_admin_edge_forwards_at_once_and_a_bpdu_takes_it_out_of_edge():
    lan = Lan("rstp")
    a = lan.bridge("a", 1)
    lan.bridge("b", 0)
    seg = lan.link("a:host", admin_edge=True)
    assert a.forwarding("host") and a.show()["ports"]["host"]["edge"]
    lan.run(5)
    assert not [e for e in lan.events["a"] if e["event"] == "topology-change"]
    # a bridge appears behind the edge port: it is no longer an edge port
    lan.attach(seg, "b:p1")
    lan.run(5)
    assert not a.show()["ports"]["host"]["edge"]
    assert a.role("host") == "root"  # b has the lower MAC


def test_backup_port_on_a_shared_segment():
    lan = Lan("rstp")
    b = lan.bridge("b", 1)
    a = lan.bridge("a", 2)
    lan.link("b:p1", "b:p2", "a:p1", point_to_point=False)
    lan.run(40)
    assert (b.role("p1"), b.role("p2")) == ("designated", "backup")
    assert a.role("p1") == "root"
    assert lan.blocked() == [("b", "p2")]


def test_priority_change_moves_the_root():
    lan, b, _ = joined_twice("rstp", settle=5)
    b.set_params(BridgeParams(priority=4096), lan.now)
    lan.run(3)
    a = lan.bridges["a"]
    assert a.show()["root"]["id"] == "1000.020000000002"
    assert lan.blocked() == [("a", "p2")]


def test_falls_back_to_802_1d_next_to_an_802_1d_bridge_and_back():
    lan = Lan("rstp")
    r = lan.bridge("r", 1)  # RSTP, the root
    s = lan.bridge("s", 2, mode="stp")
    seg = lan.link("r:p1", "s:p1")
    lan.run(10)
    assert r.show()["ports"]["p1"]["protocol"] == "stp"
    sent = kinds(lan, "r", "p1")
    fell_back = sent.index(B.CONFIG)
    assert set(sent[:fell_back]) == {B.RST} and set(sent[fell_back:]) == {B.CONFIG}
    assert all(len(f) == 14 + 3 + 35 for f in lan.sent[("r", "p1")][fell_back:])
    lan.run(35)  # the 802.1D side needs its listening and learning
    assert r.forwarding("p1") and s.forwarding("p1") and s.role("p1") == "root"
    assert s.show()["root"]["id"] == r.show()["bridge"]["id"]
    # the 802.1D bridge is replaced by an RSTP one: r goes back to RST BPDUs
    c = lan.bridge("c", 3)
    seg.ends.remove(("s", "p1"))
    lan.attach(seg, "c:p1")
    lan.run(10)
    assert r.show()["ports"]["p1"]["protocol"] == "rstp"
    assert c.show()["ports"]["p1"]["protocol"] == "rstp"
    assert kinds(lan, "r", "p1")[-1] == B.RST
    assert c.role("p1") == "root" and c.forwarding("p1")


def test_fallen_back_root_port_sends_tcn_and_the_802_1d_root_acknowledges():
    lan = Lan("rstp")
    r = lan.bridge("r", 2)
    lan.bridge("s", 1, mode="stp")  # the 802.1D root
    lan.link("r:p1", "s:p1")
    lan.run(40)
    assert r.show()["ports"]["p1"]["protocol"] == "stp" and r.role("p1") == "root"
    lan.sent.clear()
    lan.link("r:p2")  # a new port on r, no peer
    lan.run(10)
    assert r.forwarding("p2")  # an edge port after edge delay: no topology change from it
    assert B.TCN not in kinds(lan, "r", "p1")
    r.set_port_params("p2", PortParams(auto_edge=False), lan.now)
    r.set_link("p2", False, lan.now)
    r.set_link("p2", True, lan.now)
    lan.run(35)  # not an edge: forwards after 2 * forward delay, a topology change
    assert r.forwarding("p2")
    sent = kinds(lan, "r", "p1")
    assert sent.count(B.TCN) >= 1 and set(sent) == {B.TCN}
    acks = [B.decode_frame(f) for f in lan.sent[("s", "p1")]]
    assert any(x.flags & B.FLAG_TC_ACK for x in acks)
    assert sent.count(B.TCN) < 5  # the acknowledgement stopped them


def test_rstp_root_with_802_1d_bridges_on_a_triangle():
    lan = Lan("rstp")
    lan.bridge("a", 3, mode="stp")
    lan.bridge("b", 1)  # RSTP root
    lan.bridge("c", 2, mode="stp")
    lan.link("a:ab", "b:ba")
    lan.link("b:bc", "c:cb")
    lan.link("c:ca", "a:ac")
    lan.run(60)
    assert lan.blocked() == [("a", "ac")]
    assert {lan.root_of(x) for x in "abc"} == {"8000.020000000001"}
    assert lan.flooded_copies("a") == {"a": 1, "b": 1, "c": 1}


def test_mcheck_retries_rst_bpdus():
    lan = Lan("rstp")
    r = lan.bridge("r", 2)
    lan.bridge("s", 1, mode="stp")
    lan.link("r:p1", "s:p1")
    lan.run(10)
    assert r.show()["ports"]["p1"]["protocol"] == "stp"
    r.migration_check("p1", lan.now)
    lan.settle()
    assert kinds(lan, "r", "p1")[-1] == B.RST
    lan.run(10)  # the 802.1D bridge is still there: back to 802.1D
    assert r.show()["ports"]["p1"]["protocol"] == "stp"


def test_rstp_port_numbers_and_priorities():
    lan = Lan("rstp")
    a = lan.bridge("a", 1)
    a.add_port("big", 4095, bytes(6), PortParams(priority=240), True, 10000, 0.0)
    shown = a.show()["ports"]["big"]
    assert shown["port_id"] == "240.4095" and shown["cost"] == 2000
    with pytest.raises(ValueError, match="rstp-port-priority"):
        a.set_port_params("big", PortParams(priority=100), 0.0)


def test_an_802_1d_roots_long_tc_announcement_counts_as_one_topology_change():
    lan = Lan("rstp")
    r = lan.bridge("r", 2)
    lan.bridge("s", 1, mode="stp")  # the 802.1D root
    lan.link("r:p1", "s:p1")
    lan.link("r:p2")
    lan.run(80)  # converged, start-up changes over
    lan.events["r"].clear()
    lan.link("s:p2")  # forwards after 30 s: s sets TC in its hellos for 35 s
    lan.run(70)
    changes = [e for e in lan.events["r"] if e["event"] == "topology-change"]
    assert len(changes) == 1
    assert r.show()["topology_change_count"] == changes[0]["count"]


def test_port_with_rstp_disabled_forwards_ignores_bpdus_and_sends_nothing():
    lan = Lan("rstp")
    a = lan.bridge("a", 2)
    lan.bridge("b", 1)
    seg = lan.link("a:p1", enabled=False)
    lan.attach(seg, "b:p1")
    lan.run(5)
    assert a.forwarding("p1") and a.learning("p1") and a.state("p1") == "disabled"
    assert ("a", "p1") not in lan.sent
    assert a.show()["root"]["is_this_bridge"]  # b's BPDUs were not taken in
    assert a.show()["ports"]["p1"]["rx_bpdus"] > 0


def test_port_cost_and_priority_changes_move_the_root_port():
    lan, b, _ = joined_twice("rstp", settle=5)
    b.set_port_params("p2", PortParams(path_cost=100), lan.now)
    lan.run(3)
    assert (b.role("p1"), b.role("p2")) == ("alternate", "root")
    b.set_port_params("p2", PortParams(), lan.now)
    lan.bridges["a"].set_port_params("p2", PortParams(priority=64), lan.now)
    lan.run(3)  # equal costs: the lower designated port id (a's p2, 64.2) wins
    assert (b.role("p1"), b.role("p2")) == ("alternate", "root")
    assert b.show()["ports"]["p2"]["designated_port"] == "64.2"


def test_rstp_root_acknowledges_an_802_1d_bridges_tcn_and_announces_the_change():
    lan = Lan("rstp")
    r = lan.bridge("r", 1)  # the RSTP root
    lan.bridge("s", 2, mode="stp")
    lan.link("r:p1", "s:p1")
    lan.run(60)
    assert r.show()["ports"]["p1"]["protocol"] == "stp"
    lan.events["r"].clear()
    lan.sent.clear()
    lan.link("s:p2")  # forwards after 30 s: s detects a change and sends a TCN to r
    lan.run(33)
    assert B.TCN in kinds(lan, "s", "p1")
    answers = [B.decode_frame(f) for f in lan.sent[("r", "p1")]]
    assert all(a.kind == B.CONFIG for a in answers)
    assert any(a.flags & B.FLAG_TC_ACK for a in answers)
    assert any(a.flags & B.FLAG_TC for a in answers)  # the root announces the change
    assert kinds(lan, "s", "p1").count(B.TCN) <= 2  # acknowledged
    assert any(e["event"] == "topology-change" for e in lan.events["r"])


@pytest.mark.parametrize("mode", ["stp", "rstp"])
def test_turning_spanning_tree_off_and_on_on_a_port(mode):
    lan, b, _ = joined_twice(mode, settle=40)
    assert lan.blocked() == [("b", "p2")]
    b.set_port_params("p2", PortParams(enabled=False), lan.now)
    assert b.forwarding("p2") and b.state("p2") == "disabled"  # outside the protocol, as OVS
    lan.run(5)
    assert ("b", "p2") not in lan.blocked()
    b.set_port_params("p2", PortParams(), lan.now)
    assert not b.forwarding("p2")  # back in: it starts blocked/discarding
    lan.run(40)
    assert lan.blocked() == [("b", "p2")]
    assert b.role("p2") == "alternate"


def test_an_auto_edge_port_stays_edge_when_another_parameter_changes():
    lan = Lan("rstp")
    a = lan.bridge("a", 1)
    lan.link("a:host")
    lan.run(4)
    assert a.show()["ports"]["host"]["edge"] and a.forwarding("host")
    a.set_port_params("host", PortParams(path_cost=5), lan.now)
    assert a.show()["ports"]["host"]["edge"] and a.forwarding("host")
    a.set_port_params("host", PortParams(path_cost=5, auto_edge=False), lan.now)
    assert a.show()["ports"]["host"]["edge"]  # 17.25: only a BPDU or the link ends it
