"""VXLAN, Geneve and GRE headers: round trips, every malformed case, and scapy as
the independent reader and writer of the wire format."""

import struct

import pytest
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, GRE, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

from ovslite.tunnel.checksum import checksum, ones_sum
from ovslite.tunnel.headers import (
    DROP_REASONS,
    flow_key,
    geneve_header,
    gre_header,
    gre_header_len,
    parse_geneve,
    parse_gre,
    parse_vxlan,
    udp_source_port,
    vxlan_header,
)

FRAME = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
              / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1234, dport=80) / (b"d" * 33))


# -- round trips ----------------------------------------------------------------

@pytest.mark.parametrize("vni", [0, 1, 100, 0xFFFFFF])
def test_vxlan_round_trip(vni):
    assert parse_vxlan(vxlan_header(vni) + FRAME) == (vni, 8, 0)


@pytest.mark.parametrize("vni", [0, 5000, 0xFFFFFF])
def test_geneve_round_trip(vni):
    assert parse_geneve(geneve_header(vni) + FRAME) == (vni, 8, 0)


@pytest.mark.parametrize("key, csum", [(None, False), (0, False), (7, True), (0xFFFFFFFF, True),
                                       (None, True)])
def test_gre_round_trip(key, csum):
    header = gre_header(key, csum, FRAME)
    assert len(header) == gre_header_len(key is not None, csum)
    assert parse_gre(header + FRAME) == (key or 0, len(header), 0)


# -- scapy reads what we build ---------------------------------------------------

def test_scapy_reads_our_vxlan():
    pkt = VXLAN(vxlan_header(0xABCDE) + FRAME)
    assert pkt.flags == 0x08 and pkt.vni == 0xABCDE
    assert bytes(pkt[Ether]) == FRAME


def test_scapy_reads_our_geneve():
    pkt = GENEVE(geneve_header(4242) + FRAME)
    assert (pkt.version, pkt.optionlen, pkt.oam, pkt.critical, pkt.proto, pkt.vni) == (
        0, 0, 0, 0, 0x6558, 4242)
    assert bytes(pkt[Ether]) == FRAME


@pytest.mark.parametrize("csum", [False, True])
def test_scapy_reads_our_gre(csum):
    pkt = GRE(gre_header(99, csum, FRAME) + FRAME)
    assert pkt.proto == 0x6558 and pkt.key_present == 1 and pkt.key == 99
    assert pkt.chksum_present == int(csum)
    assert bytes(pkt[Ether]) == FRAME
    if csum:
        # scapy computes the checksum itself when it builds the same header with chksum unset
        ref = GRE(chksum_present=1, key_present=1, key=99, proto=0x6558) / Ether(FRAME)
        assert bytes(ref) == gre_header(99, True, FRAME) + FRAME


# -- we read what scapy builds ---------------------------------------------------

def test_we_read_scapy_vxlan():
    assert parse_vxlan(bytes(VXLAN(vni=77) / Ether(FRAME))) == (77, 8, 0)


def test_we_read_scapy_geneve_with_options_and_count_them():
    opts = [GeneveOptions(classid=0x0102, type=0x01, data=b"abcd"),
            GeneveOptions(classid=0xFFFF, type=0x7F, data=b"12345678")]
    wire = bytes(GENEVE(vni=9, proto=0x6558, options=opts) / Ether(FRAME))
    offset = 8 + 8 + 12
    assert parse_geneve(wire) == (9, offset, 2)
    assert wire[offset:] == FRAME


def test_we_read_scapy_gre_with_checksum_key_and_sequence():
    wire = bytes(GRE(chksum_present=1, key_present=1, key=3, seqnum_present=1, sequence_number=11,
                     proto=0x6558) / Ether(FRAME))
    assert parse_gre(wire) == (3, 16, 0)
    assert wire[16:] == FRAME


# -- malformed and refused --------------------------------------------------------

def test_vxlan_drops():
    assert parse_vxlan(b"") == "malformed"
    assert parse_vxlan(vxlan_header(1)) == "malformed"  # no inner Ethernet header
    assert parse_vxlan(vxlan_header(1)[:7] + FRAME[:1]) == "malformed"
    assert parse_vxlan(b"\0" * 8 + FRAME) == "bad-flags"  # I flag clear


def test_vxlan_ignores_reserved_bits_on_receipt():
    # RFC 7348: reserved fields are ignored on receipt (VXLAN-GBP/GPE set some of them)
    header = bytes([0x08 | 0x80 | 0x04, 0x12, 0x34, 0x56]) + bytes([0, 0, 5, 0xFF])
    assert parse_vxlan(header + FRAME) == (5, 8, 0)


def _geneve(first=0, flags=0, proto=0x6558, vni=1, options=b""):
    first = first | len(options) // 4
    return struct.pack("!BBHI", first, flags, proto, vni << 8) + options


def test_geneve_drops():
    assert parse_geneve(b"\0" * 7) == "malformed"
    assert parse_geneve(_geneve()) == "malformed"  # no inner Ethernet header
    assert parse_geneve(_geneve(first=0x40) + FRAME) == "bad-version"
    assert parse_geneve(_geneve(flags=0x80) + FRAME) == "control-message"
    assert parse_geneve(_geneve(flags=0x40, options=b"\0\1\x81\0") + FRAME) == "critical-option"
    assert parse_geneve(_geneve(proto=0x0800) + FRAME) == "unknown-protocol"


def test_geneve_critical_option_without_c_bit_is_dropped():
    # the option's own critical bit: RFC 8926 says drop if it is not understood
    assert parse_geneve(_geneve(options=b"\0\1\x80\0") + FRAME) == "critical-option"


def test_geneve_truncated_options():
    # Opt Len says 8 bytes of options but the packet ends before them
    short = _geneve(options=b"\0\1\2\1abcd")[:12]
    assert parse_geneve(short) == "malformed"
    # an option whose own length runs past Opt Len
    assert parse_geneve(_geneve(options=b"\0\1\2\2abcd") + FRAME) == "malformed"


def test_gre_drops():
    assert parse_gre(b"\x00\x00\x65") == "malformed"
    assert parse_gre(gre_header(1)) == "malformed"  # no inner frame
    assert parse_gre(struct.pack("!HH", 0x2000, 0x6558) + b"\0\0") == "malformed"  # key cut
    assert parse_gre(struct.pack("!HH", 0x0001, 0x6558) + FRAME) == "bad-version"
    assert parse_gre(struct.pack("!HH", 0x4000, 0x6558) + b"\0" * 4 + FRAME) == "bad-flags"
    assert parse_gre(struct.pack("!HH", 0x0800, 0x6558) + FRAME) == "bad-flags"  # strict route
    assert parse_gre(struct.pack("!HH", 0x0100, 0x6558) + FRAME) == "bad-flags"  # recursion
    assert parse_gre(struct.pack("!HH", 0, 0x0800) + FRAME) == "unknown-protocol"  # L3 GRE


def test_gre_bad_checksum():
    wire = bytearray(gre_header(5, True, FRAME) + FRAME)
    wire[-1] ^= 0x01
    assert parse_gre(bytes(wire)) == "bad-checksum"


def test_every_drop_reason_is_declared():
    seen = {parse_vxlan(b""), parse_vxlan(b"\0" * 30), parse_geneve(_geneve(first=0x80) + FRAME),
            parse_geneve(_geneve(flags=0x80) + FRAME), parse_geneve(_geneve(flags=0x40) + FRAME),
            parse_geneve(_geneve(proto=1) + FRAME)}
    assert seen <= set(DROP_REASONS)


def test_parsers_never_raise_on_garbage():
    import random
    rng = random.Random(13)
    for _ in range(2000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        for parse in (parse_vxlan, parse_geneve, parse_gre):
            result = parse(data)
            assert isinstance(result, tuple) or result in DROP_REASONS
        assert 32768 <= udp_source_port(data) < 60999  # an inner frame is not trusted either


# -- checksum and flow hash ------------------------------------------------------

def test_checksum_matches_scapy_and_handles_odd_lengths():
    from scapy.utils import checksum as scapy_checksum
    for data in (b"", b"\x01", b"\xff\xff", b"\xff\xff\x00\x00", FRAME, FRAME[:-1], bytes(1001)):
        assert checksum(data) == scapy_checksum(data), data[:8]
    assert ones_sum(b"\xff\xff") == 0xFFFF  # negative zero stays 0xFFFF, not 0


def test_udp_source_port_is_per_flow_and_in_range():
    ports = set()
    for sport in range(200):
        frame = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=sport, dport=80))
        port = udp_source_port(frame)
        assert 32768 <= port < 60999
        assert port == udp_source_port(frame)
        ports.add(port)
    assert len(ports) > 150  # flows spread (different ports for most of 200 flows)
    assert 1000 <= udp_source_port(FRAME, port_min=1000, port_max=2000) < 2000


def test_flow_key_covers_the_inner_five_tuple():
    base = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    v4 = bytes(base / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2))
    assert flow_key(v4) != flow_key(bytes(base / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=3)))
    v6 = bytes(base / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=5, dport=6))
    assert flow_key(v6).endswith(b"\x00\x05\x00\x06")
    tagged = bytes(Ether() / Dot1Q(vlan=5) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=7, dport=8))
    assert flow_key(tagged).endswith(b"\x00\x07\x00\x08")
    # IPv4 fragments hash by address only: later fragments carry no ports
    frag = bytes(base / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF") / UDP(sport=7, dport=8))
    assert len(flow_key(frag)) == 14 + 9
    arp = bytes(Ether() / ARP())
    assert flow_key(arp) == arp[:14]
    assert flow_key(b"\x01\x02") == b"\x01\x02"  # runt frames do not raise
