"""Receive coalescing: segments of one TCP flow joined into one GSO packet that,
segmented again, gives back exactly the segments that arrived; everything else
passes untouched and in order."""

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from test_tunnel_segment import PAYLOAD, _gso

from ovslite.tunnel.gro import coalesce
from ovslite.tunnel.segment import GSO_TCPV4, GSO_TCPV6, wire_frames
from ovslite.vnet import VNET_HDR, ZERO_HDR

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def tcp4(payload, flags="PA", seq=1000, sport=40000):
    return bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2", id=500, flags="DF") / TCP(
        sport=sport, dport=5201, seq=seq, ack=77, flags=flags, window=512,
        options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]) / payload)


def tcp6(payload, flags="PA", seq=1000):
    return bytes(ETH / IPv6(src="fd00::1", dst="fd00::2") / TCP(
        sport=40000, dport=5201, seq=seq, ack=77, flags=flags, window=512) / payload)


def segments(frame: bytes, gso_type: int, mss: int, l4: int) -> list[bytes]:
    """What a remote ovslite sends for one TSO frame: finished segments."""
    return [ZERO_HDR + f for f in wire_frames(_gso(frame, gso_type, mss, l4, 16, 6,
                                                   v6=gso_type == GSO_TCPV6))]


@pytest.mark.parametrize(("frame", "gso_type", "l4"), [
    (tcp4(PAYLOAD), GSO_TCPV4, 34), (tcp6(PAYLOAD), GSO_TCPV6, 54)], ids=["ipv4", "ipv6"])
def test_one_flows_segments_become_one_gso_packet_that_segments_back_the_same(frame, gso_type, l4):
    segs = segments(frame, gso_type, 1398, l4)
    assert len(segs) == 8
    (merged,) = coalesce(segs)
    flags, kind, hdr_len, gso_size, start, offset = VNET_HDR.unpack_from(merged)
    assert (flags, kind, gso_size, start, offset) == (1, gso_type, 1398, l4, 16)
    assert [ZERO_HDR + f for f in wire_frames(merged)] == segs


def test_a_corrupted_segment_is_not_merged_and_passes_alone():
    segs = segments(tcp4(PAYLOAD), GSO_TCPV4, 1398, 34)
    bad = bytearray(segs[3])
    bad[-1] ^= 0xFF
    segs[3] = bytes(bad)
    out = coalesce(segs)
    assert segs[3] in out  # untouched, for the receiver to drop
    assert len(out) == 3  # segments 0-2 merged, 3 alone, 4-7 merged
    assert b"".join(ZERO_HDR + f for p in out if p != segs[3] for f in wire_frames(p)) == \
        b"".join(s for i, s in enumerate(segs) if i != 3)


def test_a_gap_in_sequence_ends_the_run():
    segs = segments(tcp4(PAYLOAD), GSO_TCPV4, 1398, 34)
    out = coalesce(segs[:3] + segs[4:])
    assert len(out) == 2


def test_two_interleaved_flows_are_not_mixed():
    a = segments(tcp4(PAYLOAD[:4000]), GSO_TCPV4, 1000, 34)
    b = segments(tcp4(PAYLOAD[:4000], sport=40001), GSO_TCPV4, 1000, 34)
    mixed = [x for pair in zip(a, b, strict=True) for x in pair]
    assert coalesce(mixed) == mixed


def test_other_frames_pass_unchanged_and_in_order():
    udp = ZERO_HDR + bytes(ETH / IP() / UDP() / b"x")
    syn = ZERO_HDR + tcp4(b"", flags="S")
    fin = ZERO_HDR + tcp4(b"abc", flags="FA")
    partial = VNET_HDR.pack(1, 0, 0, 0, 34, 16) + tcp4(b"abc", flags="A")
    packets = [udp, syn, fin, partial]
    assert coalesce(packets) == packets


def test_hostile_bytes_never_raise():
    """Whatever a remote sends, the receive path drops or passes it: no exception."""
    import random
    import socket

    from ovslite.tunnel.endpoint import Endpoint, received_header

    rng = random.Random(13)
    good = [tcp4(PAYLOAD[:3000]), tcp6(PAYLOAD[:3000])]
    ep = Endpoint("vxlan", socket.AF_INET, 4789, sock=object())
    for _ in range(3000):
        frame = bytearray(rng.choice(good))
        for _ in range(rng.randrange(1, 8)):  # damage a few bytes, maybe cut it short
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        frame = bytes(frame[:rng.randrange(len(frame) + 1)])
        header = received_header(frame, rng.choice((68, 1450, 9000)))
        assert len(header) == len(ZERO_HDR)
        coalesce([ZERO_HDR + frame, ZERO_HDR + frame, header + frame])
        ep.classify(b"\x08\0\0\0\0\0\x64\0" + frame, "192.168.50.2")
