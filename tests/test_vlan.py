"""Bridge.forward with VLANs and per-port settings: access, trunk and native modes,
tag rewriting (priority bits and the virtio_net_hdr kept true), flooding inside a
VLAN, the (VLAN, MAC) table, flood/learning/isolation flags, admin state, storm control."""

import struct

import pytest
from helpers import BCAST, MCAST, A, B, C, X

from ovslite import portconfig, vnet
from ovslite.bridge import Bridge, Port
from ovslite.vnet import ethernet

IPV4 = b"\x08\x00"


def frame(dst: bytes, src: bytes, vid: int | None = None, pcp: int = 0, dei: int = 0,
          payload: bytes = b"payload") -> bytes:
    """A packet (zero vnet header); tagged with `vid`/`pcp`/`dei` unless vid is None."""
    tag = b"" if vid is None else struct.pack("!HH", 0x8100, pcp << 13 | dei << 12 | vid)
    return ethernet(dst + src + tag + IPV4 + payload)


def tag_of(pkt: bytes) -> tuple[int, int, int] | None:
    """(PCP, DEI, VID) of the packet's 802.1Q tag, or None if untagged."""
    if pkt[22:24] != b"\x81\x00":
        return None
    tci = pkt[24] << 8 | pkt[25]
    return tci >> 13, tci >> 12 & 1, tci & 0xFFF


def make(*settings: dict, aging: float = 300.0) -> tuple[Bridge, list[Port]]:
    """A bridge with one up port per `settings` (strings, as set-port takes them)."""
    br = Bridge("br0", aging=aging)
    ports = []
    for i, s in enumerate(settings, 1):
        p = br.add_port(Port(f"p{i}"))
        br.configure_port(p, portconfig.merge({}, portconfig.parse(s)))
        br.set_port_state(p, True)
        ports.append(p)
    return br, ports


def configure(br: Bridge, port: Port, **changes) -> None:
    changes = {k.replace("_", "-"): v for k, v in changes.items()}
    br.configure_port(port, portconfig.merge(port.settings, portconfig.parse(changes)))


def fwd(br: Bridge, port: Port, packets: list, now: float = 0.0) -> dict[str, list]:
    return {p.name: batch for p, batch in br.forward(port, packets, now).items()}


ACCESS10, ACCESS20, TRUNK = {"tag": "10"}, {"tag": "20"}, {}

# -- access ports ------------------------------------------------------------------------


def test_access_to_access_same_vlan_is_untouched():
    br, (p1, p2, p3) = make(ACCESS10, ACCESS10, ACCESS20)
    f = frame(BCAST, A)
    assert fwd(br, p1, [f]) == {"p2": [f]}


def test_access_tags_towards_a_trunk_and_trunk_untags_towards_access():
    br, (p1, p2) = make(ACCESS10, TRUNK)
    (out,) = fwd(br, p1, [frame(BCAST, A)])["p2"]
    assert out == frame(BCAST, A, vid=10)
    (back,) = fwd(br, p2, [frame(BCAST, B, vid=10, pcp=6)])["p1"]
    assert back == frame(BCAST, B)


def test_tagged_frame_on_access_port_is_dropped_and_counted():
    br, (p1, p2) = make(ACCESS10, ACCESS10)
    good = frame(BCAST, A)
    out = fwd(br, p1, [frame(BCAST, A, vid=10), good, frame(BCAST, A, vid=20)])
    assert out == {"p2": [good]}
    assert p1.stats.drops == {"vlan": 2} and p1.stats.rx_dropped == 2


def test_priority_tagged_frame_enters_the_access_vlan():
    br, (p1, p2, p3) = make(ACCESS10, ACCESS10, TRUNK)
    out = fwd(br, p1, [frame(BCAST, A, vid=0, pcp=5)])
    assert out["p2"] == [frame(BCAST, A)]  # leaves untagged
    assert tag_of(out["p3"][0]) == (5, 0, 10)  # VID set, priority kept
    assert out["p3"][0] == frame(BCAST, A, vid=10, pcp=5)
    assert p1.stats.drops == {}


def test_flooding_stays_inside_the_vlan():
    br, (p1, p2, p3, p4, p5) = make(ACCESS10, ACCESS10, ACCESS20, ACCESS20, TRUNK)
    for dst in (BCAST, MCAST, X):
        assert set(fwd(br, p1, [frame(dst, A)])) == {"p2", "p5"}
        assert set(fwd(br, p3, [frame(dst, C)])) == {"p4", "p5"}
        assert set(fwd(br, p5, [frame(dst, B, vid=20)])) == {"p3", "p4"}
        assert fwd(br, p5, [frame(dst, B, vid=30)]) == {}  # nobody else carries VLAN 30


# -- trunks --------------------------------------------------------------------------------


def test_trunk_without_list_carries_every_vlan_and_untagged_is_vlan_0():
    br, (p1, p2, p3) = make(TRUNK, TRUNK, ACCESS10)
    for vid in (1, 10, 4094):
        f = frame(BCAST, A, vid=vid)
        assert fwd(br, p1, [f])["p2"] == [f]
    untagged = frame(BCAST, A)
    assert fwd(br, p1, [untagged]) == {"p2": [untagged]}  # VLAN 0 leaves untagged
    assert p1.stats.drops == {}


def test_trunk_with_list_drops_other_vlans_and_untagged():
    br, (p1, p2, p3) = make({"trunks": "10,20"}, TRUNK, ACCESS10)
    ok = frame(BCAST, A, vid=20)
    out = fwd(br, p1, [frame(BCAST, A, vid=30), ok, frame(BCAST, A)])
    assert out == {"p2": [ok]}
    assert p1.stats.drops == {"vlan": 2}
    # ... and sends nothing of the other VLANs either
    assert "p1" not in fwd(br, p2, [frame(BCAST, B, vid=30), frame(BCAST, B)])
    assert fwd(br, p3, [frame(BCAST, C)])["p1"] == [frame(BCAST, C, vid=10)]


def test_trunk_list_with_vlan_0_takes_untagged_frames():
    br, (p1, p2) = make({"trunks": "0,10"}, TRUNK)
    f = frame(BCAST, A)
    assert fwd(br, p1, [f]) == {"p2": [f]}


def test_tagged_frame_passes_trunk_to_trunk_untouched_with_its_priority():
    br, (p1, p2) = make(TRUNK, TRUNK)
    f = frame(BCAST, A, vid=10, pcp=7, dei=1)
    (out,) = fwd(br, p1, [f])["p2"]
    assert out is f or out == f


# -- native VLANs ---------------------------------------------------------------------------


def test_native_untagged():
    br, (p1, p2, p3) = make({"vlan-mode": "native-untagged", "tag": "10"}, TRUNK, ACCESS10)
    # untagged in -> native VLAN 10
    out = fwd(br, p1, [frame(BCAST, A)])
    assert out == {"p2": [frame(BCAST, A, vid=10)], "p3": [frame(BCAST, A)]}
    # VLAN 10 leaves it untagged, other VLANs tagged
    assert fwd(br, p3, [frame(BCAST, C)])["p1"] == [frame(BCAST, C)]
    assert fwd(br, p2, [frame(BCAST, B, vid=20)])["p1"] == [frame(BCAST, B, vid=20)]
    # a frame tagged with the native VLAN is accepted too
    assert set(fwd(br, p1, [frame(BCAST, A, vid=10)])) == {"p2", "p3"}


def test_native_tagged():
    br, (p1, p2) = make({"vlan-mode": "native-tagged", "tag": "10"}, ACCESS10)
    assert fwd(br, p1, [frame(BCAST, A)]) == {"p2": [frame(BCAST, A)]}
    assert fwd(br, p2, [frame(BCAST, B)]) == {"p1": [frame(BCAST, B, vid=10)]}


def test_native_ports_never_carry_vlan_0():
    # As OVS: a native port's untagged frames are its native VLAN's, so the
    # untagged (VLAN 0) traffic of a plain trunk does not leave through it.
    br, (p1, p2, p3) = make(TRUNK, {"vlan-mode": "native-untagged", "tag": "10"},
                            {"vlan-mode": "native-tagged", "tag": "10"})
    assert fwd(br, p1, [frame(BCAST, A)]) == {}
    assert set(fwd(br, p1, [frame(BCAST, A, vid=10)])) == {"p2", "p3"}


def test_native_with_trunks_list():
    br, (p1, p2) = make({"vlan-mode": "native-untagged", "tag": "10", "trunks": "20"}, TRUNK)
    assert fwd(br, p1, [frame(BCAST, A, vid=30)]) == {}
    assert p1.stats.drops == {"vlan": 1}
    assert set(fwd(br, p1, [frame(BCAST, A, vid=20)])) == {"p2"}
    assert set(fwd(br, p1, [frame(BCAST, A, vid=10)])) == {"p2"}
    assert "p1" not in fwd(br, p2, [frame(BCAST, B, vid=30)])


def test_priority_tag_into_native_vlan_keeps_its_priority_on_the_trunk():
    br, (p1, p2) = make({"vlan-mode": "native-untagged", "tag": "10"}, TRUNK)
    (out,) = fwd(br, p1, [frame(BCAST, A, vid=0, pcp=3, dei=1)])["p2"]
    assert tag_of(out) == (3, 1, 10)


# -- retagging keeps the virtio_net_hdr true ------------------------------------------------

NEEDS_CSUM = vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM


def with_hdr(pkt: bytes, flags: int, gso_type: int, hdr_len: int, gso_size: int,
             csum_start: int, csum_offset: int) -> bytes:
    return vnet.VNET_HDR.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset) + pkt[10:]


@pytest.mark.parametrize("flags, shifts", [(NEEDS_CSUM, True), (vnet.VIRTIO_NET_HDR_F_DATA_VALID, False)])
def test_push_and_strip_move_csum_start_and_hdr_len(flags, shifts):
    br, (p1, p2, p3) = make(ACCESS10, TRUNK, ACCESS10)
    untagged = with_hdr(frame(B, A), flags, 1, 54, 1448, 34, 16)
    learn_b = frame(BCAST, B, vid=10)
    fwd(br, p2, [learn_b])
    (out,) = fwd(br, p1, [untagged])["p2"]  # known unicast, pushed tag
    assert vnet.VNET_HDR.unpack_from(out) == (flags, 1, 58, 1448, 38 if shifts else 34, 16)
    assert out[10:] == frame(B, A, vid=10)[10:]
    # and back: the trunk's tagged frame loses its tag towards the access port
    tagged = with_hdr(frame(A, B, vid=10), flags, 1, 58, 1448, 38, 16)
    (back,) = fwd(br, p2, [tagged])["p1"]
    assert vnet.VNET_HDR.unpack_from(back) == (flags, 1, 54, 1448, 34 if shifts else 38, 16)
    assert back[10:] == frame(A, B)[10:]


def test_zero_hdr_len_stays_zero_and_set_vid_leaves_the_header_alone():
    pkt = with_hdr(frame(B, A), NEEDS_CSUM, 0, 0, 0, 34, 16)
    assert vnet.VNET_HDR.unpack_from(vnet.push_tag(pkt, 10)) == (NEEDS_CSUM, 0, 0, 0, 38, 16)
    tagged = with_hdr(frame(B, A, vid=0, pcp=4), NEEDS_CSUM, 1, 58, 1448, 38, 16)
    out = vnet.set_vid(tagged, 99)
    assert out[:10] == tagged[:10] and tag_of(out) == (4, 0, 99)


def test_flood_builds_each_form_once():
    br, (p1, p2, p3, p4) = make(ACCESS10, TRUNK, TRUNK, ACCESS10)
    out = br.forward(p1, [frame(BCAST, A)], 0.0)
    by_name = {p.name: batch[0] for p, batch in out.items()}
    assert by_name["p2"] is by_name["p3"]  # one tagged copy shared by both trunks
    assert by_name["p4"] == frame(BCAST, A)


# -- the MAC table is keyed by (VLAN, MAC) ---------------------------------------------------


def test_same_mac_in_two_vlans_on_two_ports():
    br, (p1, p2, p3) = make(ACCESS10, ACCESS20, TRUNK)
    fwd(br, p1, [frame(BCAST, A)])  # A in VLAN 10 behind p1
    fwd(br, p2, [frame(BCAST, A)])  # another A in VLAN 20 behind p2
    assert br.macs.lookup(10, A, 0) is p1 and br.macs.lookup(20, A, 0) is p2
    assert br.macs.stats.moved == 0
    assert fwd(br, p3, [frame(A, B, vid=10)]) == {"p1": [frame(A, B)]}
    assert fwd(br, p3, [frame(A, B, vid=20)]) == {"p2": [frame(A, B)]}


def test_unicast_to_a_trunk_is_tagged_and_learned_per_vlan():
    br, (p1, p2) = make(ACCESS10, TRUNK)
    fwd(br, p2, [frame(BCAST, B, vid=10)])
    assert br.macs.lookup(10, B, 0) is p2 and br.macs.lookup(0, B, 0) is None
    assert fwd(br, p1, [frame(B, A)]) == {"p2": [frame(B, A, vid=10)]}


def test_mac_moves_are_counted_within_a_vlan():
    br, (p1, p2, p3) = make(ACCESS10, ACCESS10, TRUNK)
    fwd(br, p1, [frame(BCAST, A)], 0)
    fwd(br, p2, [frame(BCAST, A)], 1)
    fwd(br, p3, [frame(BCAST, A, vid=10)], 2)
    assert br.macs.stats.moved == 2 and br.macs.lookup(10, A, 2) is p3


# -- per-port flags ----------------------------------------------------------------------------


def test_learning_off_learns_nothing_but_still_forwards():
    br, (p1, p2, p3) = make({"learning": "off"}, TRUNK, TRUNK)
    assert set(fwd(br, p1, [frame(BCAST, A)])) == {"p2", "p3"}
    assert len(br.macs) == 0
    assert set(fwd(br, p2, [frame(A, B)])) == {"p1", "p3"}  # A unknown: flooded
    assert fwd(br, p1, [frame(B, A)]) == {"p2": [frame(B, A)]}  # B was learned on p2


@pytest.mark.parametrize("flag, blocked", [("flood", X), ("mcast-flood", MCAST),
                                           ("bcast-flood", BCAST)])
def test_flood_flags_keep_one_kind_of_flood_away(flag, blocked):
    br, (p1, p2, p3) = make(TRUNK, TRUNK, {flag: "off"})
    for dst in (BCAST, MCAST, X):
        want = {"p2"} if dst == blocked else {"p2", "p3"}
        assert set(fwd(br, p1, [frame(dst, A)])) == want, dst.hex()
    fwd(br, p3, [frame(BCAST, C)])
    assert set(fwd(br, p1, [frame(C, A)])) == {"p3"}  # known unicast still arrives


def test_isolated_ports_reach_only_non_isolated_ones():
    iso = {"isolated": "on"}
    br, (p1, p2, p3) = make(iso, iso, TRUNK)
    assert set(fwd(br, p1, [frame(BCAST, A)])) == {"p3"}
    assert set(fwd(br, p2, [frame(BCAST, B)])) == {"p3"}
    assert set(fwd(br, p3, [frame(BCAST, C)])) == {"p1", "p2"}
    # unicast between the isolated ones is dropped (and counted) though both MACs are known
    assert fwd(br, p1, [frame(B, A)]) == {}
    assert fwd(br, p2, [frame(A, B)]) == {}
    assert p1.stats.drops == {"unreachable": 1} and p2.stats.drops == {"unreachable": 1}
    assert fwd(br, p1, [frame(C, A)]) == {"p3": [frame(C, A)]}
    assert fwd(br, p3, [frame(A, C)]) == {"p1": [frame(A, C)]}


def test_settings_change_takes_effect_at_once():
    br, (p1, p2, p3) = make(ACCESS10, ACCESS10, ACCESS20)
    assert set(fwd(br, p1, [frame(BCAST, A)])) == {"p2"}  # reach now cached
    configure(br, p3, tag="10")
    assert set(fwd(br, p1, [frame(BCAST, A)])) == {"p2", "p3"}
    configure(br, p2, tag="20")
    assert set(fwd(br, p1, [frame(BCAST, A)])) == {"p3"}


# -- admin state -------------------------------------------------------------------------------


def test_admin_down_port_gets_nothing_and_its_frames_are_dropped():
    br, (p1, p2, p3) = make(TRUNK, TRUNK, TRUNK)
    fwd(br, p2, [frame(BCAST, B)])
    configure(br, p2, admin="down")
    assert (p2.up, p2.reason) == (False, "administratively down")
    assert set(fwd(br, p1, [frame(BCAST, A), frame(B, A)])) == {"p3"}
    assert fwd(br, p2, [frame(BCAST, B), frame(A, B)]) == {}
    assert p2.stats.drops == {"port-down": 2}
    br.macs.add_static(0, C, p2, 0)  # a static entry to the down port: counted, not sent
    assert fwd(br, p1, [frame(C, A)]) == {}
    assert p1.stats.drops == {"unreachable": 1}
    configure(br, p2, admin="up")
    assert (p2.up, p2.reason) == (True, "")
    assert set(fwd(br, p1, [frame(BCAST, A)])) == {"p2", "p3"}


def test_admin_down_hides_the_link_reason_until_admin_up():
    br, (p1, p2) = make(TRUNK, {"admin": "down"})
    assert p2.reason == "administratively down"
    br.set_port_state(p2, False, "no carrier")
    assert p2.reason == "administratively down"
    configure(br, p2, admin="up")
    assert (p2.up, p2.reason) == (False, "no carrier")
    br.set_port_state(p2, True)
    assert p2.up


# -- storm control ------------------------------------------------------------------------------


def test_storm_control_limits_floods_and_counts_drops():
    br, (p1, p2, p3) = make({"storm-control": "100"}, TRUNK, TRUNK)
    out = fwd(br, p1, [frame(BCAST, A, payload=b"%d" % i) for i in range(1000)], now=5.0)
    assert len(out["p2"]) == 100 and len(out["p3"]) == 100
    assert out["p2"][0] == frame(BCAST, A, payload=b"0")  # the first ones pass
    assert p1.stats.drops == {"storm-control": 900} and p1.stats.rx_dropped == 900


def test_storm_control_limits_multicast_and_unknown_unicast_not_known_unicast():
    br, (p1, p2, p3) = make({"storm-control": "10"}, TRUNK, TRUNK)
    fwd(br, p2, [frame(BCAST, B)])  # B is known behind p2 (p2 is not limited)
    out = fwd(br, p1, [frame(B, A)] * 1000, now=1.0)
    assert out == {"p2": [frame(B, A)] * 1000}
    out = fwd(br, p1, [frame(MCAST, A)] * 6 + [frame(X, A)] * 6, now=1.0)
    assert len(out["p3"]) == 10
    assert p1.stats.drops == {"storm-control": 2}


def test_storm_control_spends_no_tokens_on_frames_that_flood_nowhere():
    br, (p1, p2, p3) = make({"storm-control": "10"}, ACCESS20, ACCESS10)
    # p1 is a trunk; nobody else carries VLAN 30: nothing to limit, nothing counted
    assert fwd(br, p1, [frame(BCAST, A, vid=30)] * 50, now=1.0) == {}
    assert p1.stats.drops == {}
    out = fwd(br, p1, [frame(BCAST, A, vid=10)] * 50, now=1.0)
    assert len(out["p3"]) == 10 and p1.stats.drops == {"storm-control": 40}


def test_storm_control_tokens_refill_with_time_up_to_one_second():
    br, (p1, p2) = make({"storm-control": "100"}, TRUNK)
    burst = [frame(BCAST, A)] * 1000

    def passed(now):
        return len(fwd(br, p1, burst, now).get("p2", []))

    assert passed(0.0) == 100
    assert passed(0.0) == 0
    assert passed(0.5) == 50
    assert passed(0.75) == 25
    assert passed(100.0) == 100  # a long pause earns one second's worth, no more


# -- what a port learned is forgotten when it changes -----------------------------------------


def test_configure_port_flushes_that_ports_macs_only():
    br, (p1, p2, p3) = make(TRUNK, TRUNK, TRUNK)
    fwd(br, p1, [frame(BCAST, A)])
    fwd(br, p2, [frame(BCAST, B)])
    br.macs.add_static(0, C, p1, 0)
    configure(br, p1, learning="on")
    assert br.macs.lookup(0, A, 0) is None
    assert br.macs.lookup(0, B, 0) is p2
    assert br.macs.lookup(0, C, 0) is p1  # static entries stay


def test_port_going_down_flushes_its_macs():
    br, (p1, p2, p3) = make(ACCESS10, ACCESS10, TRUNK)
    fwd(br, p2, [frame(BCAST, B)])
    br.set_port_state(p2, False, "no carrier")
    assert br.macs.lookup(10, B, 0) is None
    br.set_port_state(p2, True)
    assert set(fwd(br, p1, [frame(B, A)])) == {"p2", "p3"}  # flooded again


# -- malformed tags ------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [b"", b"\x00"], ids=["no-tci", "half-tci"])
def test_truncated_vlan_header_is_dropped_not_raised(extra):
    """A 14- or 15-byte frame whose EtherType says 802.1Q has no room for the tag.

    Such frames reach forward() from tap and internal ports (the kernel does not
    parse what a VM or the host writes to a TAP). They must be dropped and
    counted like other runts, and the rest of the batch forwarded.
    """
    br, (p1, p2) = make(TRUNK, TRUNK)
    good = frame(BCAST, A)
    bad = ethernet(BCAST + A + b"\x81\x00" + extra)
    out = fwd(br, p1, [bad, good])
    assert out == {"p2": [good]}
    assert p1.stats.drops == {"runt": 1} and p1.stats.rx_dropped == 1
