"""Software GSO and checksum completion, checked against segments scapy builds itself."""

import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from ovslite.tunnel.checksum import ones_sum, pseudo_header_sum
from ovslite.tunnel.segment import (
    GSO_ECN,
    GSO_NONE,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP,
    GSO_UDP_L4,
    complete_checksum,
    wire_frames,
)
from ovslite.vnet import VNET_HDR

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
PAYLOAD = bytes((i * 7 + 3) & 0xFF for i in range(10001))  # odd length: last segment is odd
NEEDS_CSUM = 1


def _partial(frame: bytes, l4: int, field: int, proto: int, v6: bool) -> bytes:
    """`frame` as a CHECKSUM_PARTIAL sender leaves it: the field holds the pseudo-header sum."""
    if v6:
        src, dst = frame[l4 - 32:l4 - 16], frame[l4 - 16:l4]
    else:
        src, dst = frame[l4 - 8:l4 - 4], frame[l4 - 4:l4]
    seed = ones_sum(b"", pseudo_header_sum(src, dst, proto, len(frame) - l4))
    return frame[:l4 + field] + struct.pack("!H", seed) + frame[l4 + field + 2:]


def _gso(frame: bytes, gso_type: int, gso_size: int, l4: int, field: int, proto: int,
         v6: bool = False) -> bytes:
    return VNET_HDR.pack(NEEDS_CSUM, gso_type, 0, gso_size, l4, field) + _partial(
        frame, l4, field, proto, v6)


def _tcp4(payload, flags, seq=1000, ip_id=500, vlan=False):
    l2 = ETH / Dot1Q(vlan=9) if vlan else ETH
    return l2 / IP(src="10.0.0.1", dst="10.0.0.2", id=ip_id, flags="DF") / TCP(
        sport=40000, dport=5201, seq=seq, ack=77, flags=flags, window=512,
        options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]) / payload


def _tcp6(payload, flags, seq=1000):
    return ETH / IPv6(src="fd00::1", dst="fd00::2") / TCP(
        sport=40000, dport=5201, seq=seq, ack=77, flags=flags, window=512) / payload


@pytest.mark.parametrize("flags", ["PA", "FPA", "CPA", "A", "CEFPA"])
@pytest.mark.parametrize("vlan", [False, True])
def test_tcp4_segments_match_scapy(flags, vlan):
    mss = 1448
    big = bytes(_tcp4(PAYLOAD, flags, vlan=vlan))
    l4 = 18 + 20 if vlan else 34
    gso_type = GSO_TCPV4 | (GSO_ECN if "E" in flags else 0)
    frames = wire_frames(_gso(big, gso_type, mss, l4, 16, 6))
    chunks = [PAYLOAD[i:i + mss] for i in range(0, len(PAYLOAD), mss)]
    assert len(frames) == len(chunks) == 7
    for i, chunk in enumerate(chunks):
        want = set(flags)
        if i:
            want.discard("C")
        if i != len(chunks) - 1:
            want -= {"F", "P"}
        ref = _tcp4(chunk, "".join(sorted(want)), seq=1000 + i * mss, ip_id=500 + i, vlan=vlan)
        assert frames[i] == bytes(ref), f"segment {i}"


def test_tcp4_segments_parse_with_valid_checksums():
    frames = wire_frames(_gso(bytes(_tcp4(PAYLOAD, "PA")), GSO_TCPV4, 1000, 34, 16, 6))
    for raw in frames:
        pkt = Ether(raw)
        ip_sum, tcp_sum = pkt[IP].chksum, pkt[TCP].chksum
        del pkt[IP].chksum, pkt[TCP].chksum
        rebuilt = Ether(bytes(pkt))
        assert (rebuilt[IP].chksum, rebuilt[TCP].chksum) == (ip_sum, tcp_sum)
        assert rebuilt[IP].len == len(raw) - 14


def test_tcp6_segments_match_scapy():
    mss = 1220
    big = bytes(_tcp6(PAYLOAD, "PA"))
    frames = wire_frames(_gso(big, GSO_TCPV6, mss, 54, 16, 6, v6=True))
    chunks = [PAYLOAD[i:i + mss] for i in range(0, len(PAYLOAD), mss)]
    assert len(frames) == len(chunks)
    for i, chunk in enumerate(chunks):
        flags = "PA" if i == len(chunks) - 1 else "A"
        assert frames[i] == bytes(_tcp6(chunk, flags, seq=1000 + i * mss)), f"segment {i}"


def test_inner_mtu_lowers_the_segment_size():
    big = bytes(_tcp4(PAYLOAD, "A"))
    frames = wire_frames(_gso(big, GSO_TCPV4, 1448, 34, 16, 6), max_l3_len=1450)
    # 1450 - 20 IP - 32 TCP = 1398 bytes a segment
    assert max(len(f) - 14 for f in frames) == 1450
    assert b"".join(Ether(f)[TCP].payload.load for f in frames) == PAYLOAD
    assert Ether(frames[1])[TCP].seq == 1000 + 1398


def test_sequence_number_wraps():
    big = bytes(_tcp4(PAYLOAD[:3000], "A", seq=0xFFFFFF00))
    frames = wire_frames(_gso(big, GSO_TCPV4, 1448, 34, 16, 6))
    assert Ether(frames[1])[TCP].seq == (0xFFFFFF00 + 1448) & 0xFFFFFFFF
    assert frames[1] == bytes(_tcp4(PAYLOAD[1448:2896], "A", seq=(0xFFFFFF00 + 1448) & 0xFFFFFFFF,
                                    ip_id=501))


@pytest.mark.parametrize("v6", [False, True])
def test_udp_l4_segments_are_datagrams_scapy_agrees_with(v6):
    size = 1200
    ip = IPv6(src="fd00::1", dst="fd00::2") if v6 else IP(src="10.0.0.1", dst="10.0.0.2", id=9)
    big = bytes(ETH / ip / UDP(sport=5000, dport=6000) / PAYLOAD)
    l4 = 54 if v6 else 34
    frames = wire_frames(_gso(big, GSO_UDP_L4, size, l4, 6, 17, v6=v6))
    chunks = [PAYLOAD[i:i + size] for i in range(0, len(PAYLOAD), size)]
    assert len(frames) == len(chunks)
    for i, chunk in enumerate(chunks):
        ip_i = IPv6(src="fd00::1", dst="fd00::2") if v6 else IP(src="10.0.0.1", dst="10.0.0.2",
                                                                 id=9 + i)
        assert frames[i] == bytes(ETH / ip_i / UDP(sport=5000, dport=6000) / chunk), f"datagram {i}"


def test_small_gso_frame_gives_one_finished_segment():
    big = bytes(_tcp4(b"hello", "PA"))
    assert wire_frames(_gso(big, GSO_TCPV4, 1448, 34, 16, 6)) == [bytes(_tcp4(b"hello", "PA"))]


@pytest.mark.parametrize("layer, field, proto", [(TCP(sport=1, dport=2, flags="PA"), 16, 6),
                                                 (UDP(sport=1, dport=2), 6, 17)])
def test_partial_checksum_is_completed(layer, field, proto):
    frame = bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2") / layer / PAYLOAD[:777])
    packet = VNET_HDR.pack(NEEDS_CSUM, GSO_NONE, 0, 0, 34, field) + _partial(frame, 34, field, proto,
                                                                             False)
    assert packet[10:] != frame  # the partial field really differs from the finished one
    assert complete_checksum(packet) == frame
    assert wire_frames(packet) == [frame]


def test_udp_checksum_zero_is_sent_as_ffff():
    # a 2-byte payload chosen so the checksum computes to 0, which must go out as 0xffff
    def frame(word):
        return bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2)
                     / struct.pack("!H", word))
    zero = frame(0)
    partial_sum = ones_sum(zero[34:40] + zero[42:], pseudo_header_sum(zero[26:30], zero[30:34], 17, 10))
    ref = frame(0xFFFF - partial_sum)
    assert ref[40:42] == b"\xff\xff"  # scapy agrees: 0 is sent as 0xffff
    packet = VNET_HDR.pack(NEEDS_CSUM, GSO_NONE, 0, 0, 34, 6) + _partial(ref, 34, 6, 17, False)
    assert complete_checksum(packet) == ref


def test_frame_without_offload_metadata_is_returned_as_is():
    frame = bytes(_tcp4(b"x", "A"))
    assert wire_frames(bytes(10) + frame) == [frame]


@pytest.mark.parametrize("packet, message", [
    (VNET_HDR.pack(1, GSO_UDP, 0, 1000, 34, 6) + bytes(_tcp4(PAYLOAD, "A")), "gso_type 3"),
    (VNET_HDR.pack(1, GSO_TCPV6, 0, 1000, 34, 16) + bytes(_tcp4(PAYLOAD, "A")), "gso_type 4 on an IPv4"),
    (VNET_HDR.pack(1, GSO_TCPV4, 0, 1000, 34, 16) + bytes(Ether(type=0x88B5) / (b"\0" * 100)), "EtherType"),
    (VNET_HDR.pack(1, GSO_TCPV4, 0, 1000, 20, 16) + bytes(_tcp4(PAYLOAD, "A")), "csum_start 20"),
    (VNET_HDR.pack(1, GSO_TCPV4, 0, 0, 34, 16) + bytes(_tcp4(PAYLOAD, "A")), "gso_size 0"),
    (VNET_HDR.pack(1, GSO_NONE, 0, 0, 34, 9000) + bytes(_tcp4(b"", "A")), "csum_start 34"),
])
def test_unusable_offload_metadata_is_a_one_line_error(packet, message):
    with pytest.raises(ValueError, match=message):
        wire_frames(packet)


def test_prefix_goes_in_front_of_every_frame():
    big = _gso(bytes(_tcp4(PAYLOAD, "PA")), GSO_TCPV4, 1448, 34, 16, 6)
    plain = wire_frames(big)
    assert wire_frames(big, prefix=b"VXLANHDR") == [b"VXLANHDR" + f for f in plain]
    small = VNET_HDR.pack(0, GSO_NONE, 0, 0, 0, 0) + plain[0]
    assert wire_frames(small, prefix=b"HDR") == [b"HDR" + plain[0]]


def test_wrong_l4_protocol_for_the_gso_type_is_refused():
    udp = bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / PAYLOAD)
    with pytest.raises(ValueError, match="protocol 17"):
        wire_frames(VNET_HDR.pack(1, GSO_TCPV4, 0, 1000, 34, 16) + udp)
    tcp = bytes(_tcp4(PAYLOAD, "A"))
    with pytest.raises(ValueError, match="protocol 6"):
        wire_frames(VNET_HDR.pack(1, GSO_UDP_L4, 0, 1000, 34, 6) + tcp)


def test_garbage_offload_metadata_raises_only_value_error():
    # what a port hands the switch is not trusted: any header, any frame, never a crash
    import random
    rng = random.Random(13)
    good = bytes(_tcp4(PAYLOAD[:3000], "A"))
    for _ in range(3000):
        frame = good[:rng.randrange(len(good) + 1)]
        if rng.random() < 0.3:
            frame = bytes(rng.randrange(256) for _ in range(rng.randrange(80)))
        header = VNET_HDR.pack(rng.choice((0, 1)), rng.choice((0, 1, 3, 4, 5, 0x81, 9)), 0,
                               rng.choice((0, 1, 536, 1448, 65535)), rng.randrange(120),
                               rng.choice((6, 16, rng.randrange(65536))))
        try:
            wire_frames(header + frame, rng.choice((None, 60, 1450)))
        except ValueError:
            pass


def test_ipv4_options_are_copied_into_every_segment():
    from scapy.layers.inet import IPOption_RR

    def frame(payload, flags, seq, ip_id):
        return bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2", id=ip_id,
                              options=[IPOption_RR(routers=["1.2.3.4"])])
                     / TCP(sport=1, dport=2, seq=seq, flags=flags) / payload)
    big = frame(PAYLOAD[:4000], "PA", 10, 70)
    ihl = (big[14] & 0x0F) * 4
    assert ihl > 20
    l4 = 14 + ihl
    frames = wire_frames(_gso(big, GSO_TCPV4, 1500, l4, 16, 6))
    for i, chunk in enumerate([PAYLOAD[:4000][j:j + 1500] for j in range(0, 4000, 1500)]):
        assert frames[i] == frame(chunk, "PA" if i == 2 else "A", 10 + i * 1500, 70 + i)


def test_ipv6_extension_header_stays_in_every_segment():
    from scapy.layers.inet6 import IPv6ExtHdrDestOpt

    def frame(payload, flags, seq):
        return bytes(ETH / IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrDestOpt()
                     / TCP(sport=1, dport=2, seq=seq, flags=flags) / payload)
    big = frame(PAYLOAD[:3000], "PA", 5)
    l4 = 14 + 40 + 8
    frames = wire_frames(_gso(big, GSO_TCPV6, 1200, l4, 16, 6, v6=True))
    for i, chunk in enumerate([PAYLOAD[:3000][j:j + 1200] for j in range(0, 3000, 1200)]):
        assert frames[i] == frame(chunk, "PA" if i == 2 else "A", 5 + i * 1200)
