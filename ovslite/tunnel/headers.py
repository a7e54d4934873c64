"""Tunnel headers: build and parse VXLAN, Geneve and GRE (as OVS's lib/netdev-native-tnl.c).

Only the header that sits on the outer IP/UDP is handled here: the kernel
builds outer IP (and UDP) because ovslite sends through a UDP socket (vxlan,
geneve) or a raw IPPROTO_GRE socket (gre), and receives them stripped the same
way (a raw GRE socket hands over the outer IPv4 header too; the caller skips
it). Every `parse_*` takes the bytes starting at the tunnel header and
returns either a tuple (key, offset of the inner Ethernet frame, number of
Geneve options skipped) or, for a packet to drop, a reason from DROP_REASONS,
so the hot path tests `type(result) is str` and counts the reason. No parser
raises on any input.

Wire formats: VXLAN RFC 7348 (I flag 0x08, 24-bit VNI; reserved bits zero on
send, ignored on receipt), Geneve RFC 8926 (version 0, Ethernet payload 0x6558;
options skipped and counted; C bit or an option's critical bit -> drop,
since ovslite understands no option; O bit -> drop: control messages are not
tenant data), GRE RFC 2784/2890 (transparent Ethernet bridging 0x6558; K key,
C checksum computed on send and verified on receipt, S sequence accepted and
ignored; R, strict-source-route, recursion or version != 0 -> drop).

`udp_source_port` spreads flows over the ephemeral range the way the kernel's
udp_flow_src_port does (hash of the inner flow scaled into [min, max)).
"""

from __future__ import annotations

import struct
import zlib

from .checksum import checksum, ones_sum

ETH_P_TEB = 0x6558  # transparent Ethernet bridging: the payload is an Ethernet frame
DROP_REASONS = ("malformed", "bad-version", "bad-flags", "unknown-protocol",
                "critical-option", "control-message", "bad-checksum")

# -- VXLAN (RFC 7348): flags(8) reserved(24) | VNI(24) reserved(8)
VXLAN_HLEN = 8
VXLAN_FLAG_I = 0x08
_VXLAN = struct.Struct("!II")


def vxlan_header(vni: int) -> bytes:
    return _VXLAN.pack(VXLAN_FLAG_I << 24, vni << 8)


def parse_vxlan(data) -> tuple[int, int, int] | str:
    if len(data) < VXLAN_HLEN + 14:
        return "malformed"
    flags_word, vni_word = _VXLAN.unpack_from(data)
    if not flags_word & (VXLAN_FLAG_I << 24):
        return "bad-flags"
    return vni_word >> 8, VXLAN_HLEN, 0


# -- Geneve (RFC 8926): ver(2) optlen(6) | O C rsvd(6) | protocol(16) | VNI(24) rsvd(8)
GENEVE_HLEN = 8
GENEVE_F_OAM = 0x80
GENEVE_F_CRITICAL = 0x40
GENEVE_OPT_CRITICAL = 0x80  # high bit of an option's type
_GENEVE = struct.Struct("!BBHI")
_GENEVE_OPT = struct.Struct("!HBB")  # class, type, rsvd(3) length(5) in 4-byte words


def geneve_header(vni: int) -> bytes:
    return _GENEVE.pack(0, 0, ETH_P_TEB, vni << 8)


def parse_geneve(data) -> tuple[int, int, int] | str:
    if len(data) < GENEVE_HLEN:
        return "malformed"
    ver_optlen, flags, proto, vni_word = _GENEVE.unpack_from(data)
    if ver_optlen >> 6:
        return "bad-version"
    end = GENEVE_HLEN + (ver_optlen & 0x3F) * 4
    if len(data) < end + 14:
        return "malformed"
    if flags & GENEVE_F_OAM:
        return "control-message"
    if flags & GENEVE_F_CRITICAL:
        return "critical-option"
    if proto != ETH_P_TEB:
        return "unknown-protocol"
    options, pos = 0, GENEVE_HLEN
    while pos < end:
        if pos + 4 > end:
            return "malformed"
        _, opt_type, length = _GENEVE_OPT.unpack_from(data, pos)
        if opt_type & GENEVE_OPT_CRITICAL:
            return "critical-option"
        pos += 4 + (length & 0x1F) * 4
        options += 1
    if pos != end:
        return "malformed"  # the last option runs past Opt Len
    return vni_word >> 8, end, options


# -- GRE (RFC 2784 + 2890): C R K S s recur(3) | flags(5) ver(3) | protocol(16)
#    [checksum(16) reserved1(16)] [key(32)] [sequence(32)]
GRE_F_CSUM = 0x8000
GRE_F_ROUTING = 0x4000
GRE_F_KEY = 0x2000
GRE_F_SEQ = 0x1000
#: bits 1-5 a receiver without RFC 1701 routing must find clear, K and S aside
GRE_F_REFUSED = GRE_F_ROUTING | 0x0800 | 0x0700  # R, strict source route, recursion
GRE_VERSION = 0x0007
_GRE = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


def gre_header_len(key_present: bool, csum: bool) -> int:
    return 4 + (4 if csum else 0) + (4 if key_present else 0)


def gre_header(key: int | None, csum: bool = False, payload=b"") -> bytes:
    """GRE header for `payload` (the inner frame); `key` None sends no key field.

    With `csum` the checksum covers header and payload (RFC 2784), so the
    payload must be given; it is not copied into the result.
    """
    flags = (GRE_F_KEY if key is not None else 0) | (GRE_F_CSUM if csum else 0)
    header = _GRE.pack(flags, ETH_P_TEB)
    if csum:
        header += b"\0\0\0\0"
    if key is not None:
        header += _U32.pack(key)
    if csum:
        value = checksum(payload, ones_sum(header))
        header = header[:4] + _U16.pack(value) + header[6:]
    return header


def parse_gre(data) -> tuple[int, int, int] | str:
    """Key (0 when the K bit is clear) and inner-frame offset, or a drop reason."""
    if len(data) < 4:
        return "malformed"
    flags, proto = _GRE.unpack_from(data)
    if flags & GRE_VERSION:
        return "bad-version"
    if flags & GRE_F_REFUSED:
        return "bad-flags"
    offset = 4
    if flags & GRE_F_CSUM:
        offset += 4
    key = 0
    if flags & GRE_F_KEY:
        if len(data) < offset + 4:
            return "malformed"
        key = _U32.unpack_from(data, offset)[0]
        offset += 4
    if flags & GRE_F_SEQ:
        offset += 4
    if len(data) < offset + 14:
        return "malformed"
    if proto != ETH_P_TEB:
        return "unknown-protocol"
    if flags & GRE_F_CSUM and ones_sum(data) != 0xFFFF:
        return "bad-checksum"
    return key, offset, 0


# -- UDP source port from the inner flow --------------------------------------
#: the kernel's default net.ipv4.ip_local_port_range, which its vxlan and geneve use
EPHEMERAL_MIN, EPHEMERAL_MAX = 32768, 60999
_ETH_P_8021Q = (0x8100, 0x88A8)
_L4_PORTS = (6, 17, 132, 33)  # TCP, UDP, SCTP, DCCP: protocols whose first 4 bytes are ports
_PROTO = [bytes((n,)) for n in range(256)]


_IPV4_FLOW = struct.Struct("!B5xHxB2x8s")  # version/IHL, flags/fragment, protocol, addresses
_IPV6_FLOW = struct.Struct("!6xB1x32s")  # next header, addresses


def flow_key(frame, offset: int = 0) -> bytes:
    """The bytes that identify `frame`'s flow: MACs, VLAN tags and EtherType, IP
    addresses, protocol and L4 ports when present (no ports for IPv4 fragments
    or behind IPv6 extension headers, which are not walked)."""
    pos = offset + 12
    size = len(frame)
    ethertype = (frame[pos] << 8) | frame[pos + 1] if size >= pos + 2 else 0
    while ethertype in _ETH_P_8021Q and size >= pos + 6:
        pos += 4
        ethertype = (frame[pos] << 8) | frame[pos + 1]
    l3 = pos + 2
    key = bytes(frame[offset:l3])
    if ethertype == 0x0800 and size >= l3 + 20:
        vihl, fragment, proto, addresses = _IPV4_FLOW.unpack_from(frame, l3)
        l4 = l3 + (vihl & 0x0F) * 4
        if fragment & 0x3FFF:
            proto = 0  # a later fragment has no ports; the first must hash like it
    elif ethertype == 0x86DD and size >= l3 + 40:
        proto, addresses = _IPV6_FLOW.unpack_from(frame, l3)
        l4 = l3 + 40
    else:
        return key
    if proto in _L4_PORTS and size >= l4 + 4:
        return b"".join((key, addresses, _PROTO[proto], frame[l4:l4 + 4]))
    return b"".join((key, addresses, _PROTO[proto]))


def udp_source_port(frame, offset: int = 0, port_min: int = EPHEMERAL_MIN,
                    port_max: int = EPHEMERAL_MAX) -> int:
    """UDP source port for `frame` (Ethernet at `offset`): same flow, same port, in [min, max)."""
    flow_hash = zlib.crc32(flow_key(frame, offset))
    return port_min + ((flow_hash * (port_max - port_min)) >> 32)
