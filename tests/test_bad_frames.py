"""Frames the bridge must drop, never learn and count by reason (issue #12):
zero, multicast and own-address sources, VLAN 4095, reserved group addresses.

The flow cache's side of it (a cached flow never skips these checks) is here
too; tests/test_flows.py's model test sends such frames among the rest.
"""

import pytest
import structlog
from helpers import BCAST, MCAST, TYPE, A, B, C, CtlRunner, Sink, make_bridge, one_line_error

from ovslite import portconfig
from ovslite.bridge import Bridge, Port, is_reserved_group
from ovslite.datapath import Datapath
from ovslite.vnet import ethernet, push_tag

ZERO = bytes(6)
OWN = bytes.fromhex("02bb00000001")  # the bridge's internal port's MAC in these tests
LLDP = bytes.fromhex("0180c200000e")


def pkt(dst: bytes, src: bytes, vlan: int | None = None) -> bytes:
    p = ethernet(dst + src + b"\x08\x00" + bytes(46))
    return push_tag(p, vlan) if vlan is not None else p


def fwd(br: Bridge, port: Port, packets: list, now: float = 0.0) -> dict[str, list]:
    return {p.name: batch for p, batch in br.forward(port, packets, now).items()}


def conf(br: Bridge, port: Port, **settings) -> None:
    s = {k.replace("_", "-"): v for k, v in settings.items()}
    br.configure_port(port, portconfig.merge({}, portconfig.parse(s)))


def with_local_port() -> tuple[Bridge, Port, Port, Port]:
    """br0: p1, p2 and the internal port br0 with address OWN, all up."""
    br, (p1, p2) = make_bridge(2)
    local = br.add_port(Port("br0", "internal"))
    br.set_port_state(local, True)
    br.set_local_mac(local, OWN)
    return br, local, p1, p2


# -- sources -----------------------------------------------------------------------


@pytest.mark.parametrize("dst", [B, BCAST, MCAST], ids=["unicast", "broadcast", "multicast"])
def test_zero_source_is_dropped_not_learned_and_counted(dst):
    br, (p1, p2, p3) = make_bridge()
    br.macs.learn(0, B, p2, 0.0)
    assert fwd(br, p1, [pkt(dst, ZERO), pkt(dst, ZERO)]) == {}
    assert br.macs.get(0, ZERO) is None
    assert p1.stats.drops == {"zero-source": 2} and p1.stats.rx_dropped == 2


@pytest.mark.parametrize("src", [MCAST, BCAST], ids=["multicast", "broadcast"])
def test_group_source_is_dropped_not_flooded(src):
    br, (p1, p2, p3) = make_bridge()
    assert fwd(br, p1, [pkt(BCAST, src), pkt(B, src)]) == {}
    assert len(br.macs) == 0
    assert p1.stats.drops == {"multicast-source": 2}


def test_bad_sources_are_dropped_with_learning_off_too():
    br, (p1, p2, p3) = make_bridge()
    conf(br, p1, learning="off")
    assert fwd(br, p1, [pkt(BCAST, ZERO), pkt(BCAST, MCAST)]) == {}
    assert p1.stats.drops == {"zero-source": 1, "multicast-source": 1}


def test_good_frames_around_bad_ones_still_pass():
    br, (p1, p2, p3) = make_bridge()
    good = pkt(BCAST, A)
    out = fwd(br, p1, [good, pkt(BCAST, ZERO), good, pkt(BCAST, MCAST), good])
    assert out == {"p2": [good] * 3, "p3": [good] * 3}
    assert p1.stats.drops == {"zero-source": 1, "multicast-source": 1}


def test_own_address_from_another_port_is_dropped_and_never_learned():
    br, local, p1, p2 = with_local_port()
    assert fwd(br, p1, [pkt(BCAST, OWN), pkt(A, OWN)]) == {}
    assert p1.stats.drops == {"own-source": 2}
    assert br.macs.get(0, OWN) is None
    # the host's own frames are learned, and answers reach it
    fwd(br, local, [pkt(BCAST, OWN)])
    assert br.macs.get(0, OWN).port is local
    reply = pkt(OWN, A)
    assert fwd(br, p1, [reply]) == {"br0": [reply]}
    assert fwd(br, p2, [pkt(BCAST, OWN)]) == {}  # a spoof does not take the entry over
    assert br.macs.get(0, OWN).port is local and p2.stats.drops == {"own-source": 1}


def test_own_address_is_protected_in_every_vlan():
    br, local, p1, p2 = with_local_port()
    conf(br, p1, tag="10")
    assert fwd(br, p1, [pkt(BCAST, OWN)]) == {}
    assert fwd(br, p2, [pkt(BCAST, OWN, vlan=20)]) == {}
    assert p1.stats.drops == {"own-source": 1} and p2.stats.drops == {"own-source": 1}


def test_setting_the_local_mac_forgets_what_another_port_taught():
    br, (p1, p2) = make_bridge(2)
    local = br.add_port(Port("br0", "internal"))
    br.set_port_state(local, True)
    fwd(br, p1, [pkt(BCAST, OWN)])  # learned before the bridge knew it as its own
    fwd(br, p1, [pkt(BCAST, OWN, vlan=20)])
    br.macs.add_static(30, OWN, p2, 0.0)  # what the user put there stays
    br.set_local_mac(local, OWN)
    assert br.macs.get(0, OWN) is None and br.macs.get(20, OWN) is None
    assert br.macs.get(30, OWN).port is p2


def test_a_changed_local_mac_frees_the_old_one_and_guards_the_new():
    br, local, p1, p2 = with_local_port()
    new = bytes.fromhex("02bb00000099")
    br.set_local_mac(local, new)
    assert set(fwd(br, p1, [pkt(BCAST, OWN)])) == {"p2", "br0"}
    assert fwd(br, p1, [pkt(BCAST, new)]) == {}
    assert br.local_macs == {new: local}
    br.remove_port("br0")
    assert br.local_macs == {}
    assert set(fwd(br, p1, [pkt(BCAST, new)])) == {"p2"}


def test_another_bridges_address_is_a_host_like_any_other():
    """Patch ports join bridges: br1's own MAC arriving on br0 is br1's host, learned."""
    br, local, p1, p2 = with_local_port()
    other = bytes.fromhex("02bb00000002")
    assert set(fwd(br, p1, [pkt(BCAST, other)])) == {"p2", "br0"}
    assert br.macs.get(0, other).port is p1


# -- VLAN tags -----------------------------------------------------------------------


def test_vlan_4095_is_dropped_not_learned_and_counted():
    br, (p1, p2, p3) = make_bridge()  # trunks carrying every VLAN
    assert fwd(br, p1, [pkt(BCAST, A, vlan=4095), pkt(B, A, vlan=4095)]) == {}
    assert len(br.macs) == 0 and 4095 not in br.macs.vlans
    assert p1.stats.drops == {"reserved-vlan": 2}


def test_vlan_4095_on_an_access_port_counts_as_reserved_too():
    br, (p1, p2, p3) = make_bridge()
    conf(br, p1, tag="10")
    assert fwd(br, p1, [pkt(BCAST, A, vlan=4095)]) == {}
    assert p1.stats.drops == {"reserved-vlan": 1}


def test_priority_tag_still_enters_the_ports_vlan():
    br, (p1, p2, p3) = make_bridge()
    conf(br, p1, tag="10")
    conf(br, p2, tag="10")
    frame = pkt(BCAST, A, vlan=0)
    out = fwd(br, p1, [frame])
    assert out == {"p2": [pkt(BCAST, A)], "p3": [pkt(BCAST, A, vlan=10)]}  # p3: a trunk
    assert br.macs.get(10, A).port is p1 and p1.stats.drops == {}


def test_vlan_4094_is_an_ordinary_vlan():
    br, (p1, p2, p3) = make_bridge()
    frame = pkt(BCAST, A, vlan=4094)
    assert fwd(br, p1, [frame]) == {"p2": [frame], "p3": [frame]}
    assert br.macs.get(4094, A).port is p1


# -- reserved group addresses --------------------------------------------------------------


@pytest.mark.parametrize("last", range(16))
def test_reserved_group_addresses_are_not_forwarded_by_default(last):
    br, (p1, p2, p3) = make_bridge()
    dst = bytes.fromhex("0180c20000") + bytes([last])
    assert is_reserved_group(dst)
    assert fwd(br, p1, [pkt(dst, A)]) == {}
    assert p1.stats.drops == {"reserved-group": 1}
    assert br.macs.get(0, A).port is p1  # the sender is learned, as the Linux bridge does


def test_next_group_addresses_are_ordinary_multicast():
    br, (p1, p2, p3) = make_bridge()
    for dst in (bytes.fromhex("0180c2000010"), bytes.fromhex("0180c2000100")):
        assert not is_reserved_group(dst)
        assert set(fwd(br, p1, [pkt(dst, A)])) == {"p2", "p3"}
    assert p1.stats.drops == {}


def test_forward_bpdu_floods_them_like_multicast_and_takes_effect_at_once():
    br, (p1, p2, p3) = make_bridge()
    conf(br, p3, mcast_flood="off")
    frame = pkt(LLDP, A, vlan=10)
    assert br.forward_bpdu is False
    version = br.version
    br.forward_bpdu = True
    assert br.version > version  # cached decisions are dropped
    assert fwd(br, p1, [frame]) == {"p2": [frame]}
    br.forward_bpdu = False
    assert fwd(br, p1, [frame]) == {}
    assert p1.stats.drops == {"reserved-group": 1}


# -- the flow cache never skips the checks ---------------------------------------------------


def cached_bridge():
    br, local, p1, p2 = with_local_port()
    for p in (local, p1, p2):
        p.netdev = Sink()
    return br, local, p1, p2, Datapath(None, clock=lambda: 5.0)


def test_bad_sources_to_a_known_destination_never_get_a_flow():
    br, local, p1, p2, dp = cached_bridge()
    conf(br, p1, learning="off")  # nothing to look up: only the check stops them
    dp.receive(p2, [pkt(BCAST, B)])
    for src in (ZERO, OWN, MCAST):
        for _ in range(3):
            dp.receive(p1, [pkt(B, src)])
    assert p2.netdev.sent == [] and len(dp.flows) == 0
    assert p1.stats.drops == {"zero-source": 3, "own-source": 3, "multicast-source": 3}


def test_a_flow_stops_when_its_source_becomes_the_bridges_address():
    br, local, p1, p2, dp = cached_bridge()
    dp.receive(p2, [pkt(BCAST, B)])
    frame = pkt(B, C)
    dp.receive(p1, [frame])
    dp.receive(p1, [frame])
    assert dp.flows.hits == 1 and len(p2.netdev.sent) == 2
    br.set_local_mac(local, C)  # `ip link set dev br0 address C`
    dp.receive(p1, [frame])
    assert len(p2.netdev.sent) == 2 and p1.stats.drops == {"own-source": 1}


def test_vlan_4095_never_gets_a_flow():
    br, local, p1, p2, dp = cached_bridge()
    dp.receive(p2, [pkt(BCAST, B)])
    br.macs.add_static(4095, B, p2, 0.0)  # even if an entry were there
    for _ in range(3):
        dp.receive(p1, [pkt(B, A, vlan=4095)])
    assert p2.netdev.sent == [] and len(dp.flows) == 0
    assert p1.stats.drops == {"reserved-vlan": 3}


# -- the switch: the internal port's MAC, dump-ports -------------------------------------------


@pytest.fixture
def ctl(daemon):
    with structlog.testing.capture_logs():  # keep the daemon's log out of the CLI's output
        yield CtlRunner(daemon)


def test_dump_ports_counts_each_reason_and_the_internal_mac_is_the_bridges(ctl, daemon):
    ctl("add-br", "br0")
    ctl("add-port", "br0", "p1", "--type", TYPE)
    sw = daemon.switch
    own = sw.ports["br0"].netdev.mac  # what local_mac() reports, read when the port was added
    frames = [pkt(BCAST, ZERO), pkt(BCAST, MCAST), pkt(BCAST, own), pkt(B, A, vlan=4095),
              pkt(LLDP, A), pkt(BCAST, A)]
    ctl.call(lambda: daemon.datapath.receive(sw.ports["p1"], frames))
    assert sw.ports["br0"].netdev.sent == [frames[-1]]
    assert ctl("dump-ports", "br0").stdout.splitlines()[-1] == (
        "               drops: multicast-source=1, own-source=1, reserved-group=1, "
        "reserved-vlan=1, zero-source=1")
    assert ctl("fdb-show", "br0").stdout.count("\n") == 2  # a header and A, nothing else

    # `ip link set dev br0 address ...`: the link event makes the switch read it again
    new = bytes.fromhex("02bb000000aa")

    def change_address():
        netdev = sw.ports["br0"].netdev
        netdev.kernel_device = lambda: "br0"  # as the real one's, so the event is its
        netdev.mac = new
        sw.link_event("br0", 0, 0x10001, False)  # IFF_UP | IFF_LOWER_UP

    ctl.call(change_address)
    assert sw.bridge("br0").local_macs == {new: sw.ports["br0"]}
    ctl.call(lambda: daemon.datapath.receive(sw.ports["p1"], [pkt(BCAST, new), pkt(BCAST, own)]))
    assert sw.ports["br0"].netdev.sent[-1] == pkt(BCAST, own)
    assert sw.ports["p1"].stats.drops["own-source"] == 2


def test_ovslite_ctl_trace_names_the_drop_reason(ctl):
    ctl("add-br", "br0")
    ctl("add-port", "br0", "p1", "--type", TYPE)
    for fields, reason in (
        (["dl_src=00:00:00:00:00:00"], "source 00:00:00:00:00:00 is all zeros (counted as zero-source)"),
        (["dl_src=02:00:00:00:00:01", "dl_vlan=4095"], "VLAN 4095 is reserved (counted as reserved-vlan)"),
    ):
        out = ctl("trace", "br0", "in_port=p1", "dl_dst=ff:ff:ff:ff:ff:ff", *fields).stdout
        assert out.splitlines()[-1] == f"Final result: drop: {reason}", out


def test_vlan_4095_is_refused_by_the_fdb_commands_in_one_line(ctl):
    ctl("add-br", "br0")
    for args in (["fdb-show", "br0"], ["fdb-del", "br0", "02:00:00:00:00:01"],
                 ["fdb-add", "br0", "02:00:00:00:00:01", "br0"]):
        one_line_error(ctl(*args, "--vlan", "4095", code=2), 2, "4095 is not in the range")
