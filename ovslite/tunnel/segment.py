"""Software GSO and checksum completion for frames entering a tunnel.

ovslite moves frames as virtio_net_hdr + Ethernet (ovslite.vnet): a 64 KB TSO
frame or a checksum-partial frame stays that way from port to port and the
kernel finishes it on the far side. A tunnel has no far-side kernel for the
inner frame (AF_PACKET's vnet header cannot describe a tunnel GSO frame), so
before encapsulation `wire_frames` turns a packet into finished Ethernet
frames: GSO frames cut into segments of at most gso_size payload (less if the
tunnel's inner MTU demands it), with per-segment IP total length / payload
length, IPv4 id + i and header checksum, TCP seq + i * mss, FIN/PSH only on the
last segment and CWR only on the first (as the kernel's tcp_gso_segment),
UDP_L4 as separate datagrams; every L4 checksum computed whole. A non-GSO
frame with NEEDS_CSUM gets its partial checksum completed (skb_checksum_help).

Limits: IPv4 and IPv6 (IPv6 extension headers are not walked: csum_start
says where L4 begins), behind any number of 802.1Q/802.1ad tags; legacy UFO
(gso_type 3, IP fragmentation), other gso_types, and frames whose headers
contradict the vnet header are refused with a one-line ValueError (the caller
counts a drop), never another exception. Cost: one int.from_bytes per segment
plus a few integer additions; ~330-430 µs of CPU per 64 KB frame here
(docs/overlay-design.md (e)).
"""

from __future__ import annotations

import struct

from ..vnet import VIRTIO_NET_HDR_F_NEEDS_CSUM, VNET_HDR, VNET_HDR_LEN
from .checksum import checksum, fold, ones_sum, pseudo_header_sum

GSO_NONE, GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_UDP_L4 = 0, 1, 3, 4, 5
GSO_ECN = 0x80
TCP_FIN, TCP_PSH, TCP_CWR = 0x01, 0x08, 0x80
IPPROTO_TCP, IPPROTO_UDP = 6, 17
UDP_CSUM_OFFSET = 6
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U8 = struct.Struct("!B")
_IPV4_VAR = struct.Struct("!HH")  # total length, identification
_UDP_VAR = struct.Struct("!HH")  # length, checksum
_ETH_P_8021Q = (0x8100, 0x88A8)


def _l3_offset(frame) -> tuple[int, int]:
    """(EtherType, offset of the L3 header) past any VLAN tags; ValueError if cut short."""
    pos = 12
    if len(frame) < pos + 2:
        raise ValueError(f"GSO frame of {len(frame)} bytes has no Ethernet header")
    ethertype = (frame[pos] << 8) | frame[pos + 1]
    while ethertype in _ETH_P_8021Q:
        pos += 4
        if len(frame) < pos + 2:
            raise ValueError("GSO frame ends inside its VLAN tags")
        ethertype = (frame[pos] << 8) | frame[pos + 1]
    return ethertype, pos + 2


def complete_checksum(packet, prefix: bytes = b"") -> bytes:
    """The Ethernet frame of a non-GSO `packet` with its partial checksum (if any) finished.

    The field at csum_start + csum_offset already holds the pseudo-header sum
    (CHECKSUM_PARTIAL): the checksum is the complement of the sum from
    csum_start to the end, that field included.
    """
    flags, _, _, _, start, offset = VNET_HDR.unpack_from(packet)
    frame = memoryview(packet)[VNET_HDR_LEN:]
    if not flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
        return b"".join((prefix, frame))
    field = start + offset
    if field + 2 > len(frame):
        raise ValueError(f"csum_start {start} + csum_offset {offset} is past the frame ({len(frame)})")
    value = checksum(frame[start:])
    if value == 0 and offset == UDP_CSUM_OFFSET:
        value = 0xFFFF  # a UDP checksum of 0 means "none": send its other form
    return b"".join((prefix, frame[:field], _U16.pack(value), frame[field + 2:]))


def wire_frames(packet, max_l3_len: int | None = None, prefix: bytes = b"") -> list[bytes]:
    """The finished Ethernet frames `packet` (vnet header + frame) stands for.

    `max_l3_len` (the tunnel's inner MTU) lowers the segment size when a GSO
    frame's gso_size would make larger IP packets; a non-GSO frame is returned
    whole (too-big is the caller's decision). Each frame comes with `prefix`
    in front (a tunnel header that is the same for all: VXLAN, Geneve), which
    saves copying every segment again to encapsulate it.
    """
    gso_type = packet[1] & ~GSO_ECN
    if gso_type == GSO_NONE:
        return [complete_checksum(packet, prefix)]
    if gso_type not in (GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4):
        raise ValueError(f"gso_type {gso_type} is not supported (TCPv4, TCPv6, UDP_L4 are)")
    return segment(packet, max_l3_len, prefix)


def segment(packet, max_l3_len: int | None = None, prefix: bytes = b"") -> list[bytes]:
    """Cut a TCP or UDP_L4 GSO packet into finished frames (see module doc)."""
    _, gso_type, _, gso_size, l4, _ = VNET_HDR.unpack_from(packet)
    gso_type &= ~GSO_ECN
    frame = memoryview(packet)[VNET_HDR_LEN:]
    ethertype, l3 = _l3_offset(frame)
    proto = IPPROTO_UDP if gso_type == GSO_UDP_L4 else IPPROTO_TCP
    if ethertype == 0x0800:
        if len(frame) < l3 + 20:
            raise ValueError("GSO frame ends inside its IPv4 header")
        version, ip_hlen = 4, (frame[l3] & 0x0F) * 4
        src, dst = frame[l3 + 12:l3 + 16], frame[l3 + 16:l3 + 20]
        ip_proto = frame[l3 + 9]
        ip_id = (frame[l3 + 4] << 8) | frame[l3 + 5]
    elif ethertype == 0x86DD:
        if len(frame) < l3 + 40:
            raise ValueError("GSO frame ends inside its IPv6 header")
        version, ip_hlen = 6, 40
        src, dst = frame[l3 + 8:l3 + 24], frame[l3 + 24:l3 + 40]
        # with extension headers, csum_start (not the Next Header chain) says where L4 is
        ip_proto = frame[l3 + 6] if l4 == l3 + 40 else proto
        ip_id = 0
    else:
        raise ValueError(f"GSO frame with EtherType {ethertype:#06x} (IPv4 or IPv6 expected)")
    if gso_type == GSO_TCPV4 and version != 4 or gso_type == GSO_TCPV6 and version != 6:
        raise ValueError(f"gso_type {gso_type} on an IPv{version} frame")
    if ip_proto != proto:
        raise ValueError(f"gso_type {gso_type} on a frame of IP protocol {ip_proto}")
    if l4 < l3 + ip_hlen or l4 + (8 if proto == IPPROTO_UDP else 20) > len(frame):
        raise ValueError(f"csum_start {l4} does not point at an L4 header")
    if gso_type == GSO_UDP_L4:
        l4_hlen = 8
    else:
        l4_hlen = (frame[l4 + 12] >> 4) * 4
        if l4_hlen < 20 or l4 + l4_hlen > len(frame):
            raise ValueError("GSO frame with a malformed TCP header")
    mss = gso_size
    if max_l3_len is not None:
        mss = min(mss, max_l3_len - (l4 - l3) - l4_hlen)
    if mss <= 0:
        raise ValueError(f"gso_size {gso_size} leaves no room for payload")

    # Per segment only a few header words change, so the sums of the others are
    # taken once here and each segment costs one pass over its payload
    # (int.from_bytes) plus a handful of integer additions.
    eth_ip = bytes(frame[:l4])
    l4_head = bytes(frame[l4:l4 + l4_hlen])
    payload = frame[l4 + l4_hlen:]
    if version == 4:  # words 1 (total length), 2 (id) and 5 (checksum) change
        ip_pre, ip_mid, ip_post = eth_ip[:l3 + 2], eth_ip[l3 + 6:l3 + 10], eth_ip[l3 + 12:]
        ip_const = ones_sum(eth_ip[l3:l3 + 2] + ip_mid + eth_ip[l3 + 12:l3 + ip_hlen])
    else:  # the payload length word changes
        ip_pre, ip_post = eth_ip[:l3 + 4], eth_ip[l3 + 6:]
    l3_len = l4 - l3  # IP header, with IPv4 options or IPv6 extension headers
    if proto == IPPROTO_TCP:  # seq, the flags byte and the checksum change
        seq = int.from_bytes(l4_head[4:8], "big")
        tcp_flags = l4_head[13]
        tcp_ports, tcp_ack_off, tcp_window, tcp_rest = (
            l4_head[:4], l4_head[8:13], l4_head[14:16], l4_head[18:])
        l4_const = ones_sum(tcp_ports + bytes(4) + tcp_ack_off + b"\0" + tcp_window + b"\0\0" + tcp_rest)
    else:  # length and checksum change
        udp_ports = l4_head[:4]
        l4_const = ones_sum(udp_ports)
    base = pseudo_header_sum(src, dst, proto, 0) + l4_const
    count = max(1, -(-len(payload) // mss))
    out = []
    for i in range(count):
        chunk = payload[i * mss:(i + 1) * mss]
        l4_len = l4_hlen + len(chunk)
        data = int.from_bytes(chunk, "big")
        if len(chunk) & 1:
            data <<= 8  # the odd byte is the high half of a word
        if version == 4:
            total, ip_id_i = l3_len + l4_len, (ip_id + i) & 0xFFFF
            ip = b"".join((ip_pre, _IPV4_VAR.pack(total, ip_id_i), ip_mid,
                           _U16.pack(~fold(ip_const + total + ip_id_i) & 0xFFFF), ip_post))
        else:
            ip = b"".join((ip_pre, _U16.pack(l3_len - 40 + l4_len), ip_post))
        if proto == IPPROTO_TCP:
            seq_i = (seq + i * mss) & 0xFFFFFFFF
            flags = tcp_flags
            if i:
                flags &= ~TCP_CWR
            if i != count - 1:
                flags &= ~(TCP_FIN | TCP_PSH)
            value = ~fold(base + l4_len + seq_i + flags + data) & 0xFFFF
            l4_bytes = b"".join((tcp_ports, _U32.pack(seq_i), tcp_ack_off, _U8.pack(flags),
                                 tcp_window, _U16.pack(value), tcp_rest))
        else:
            value = ~fold(base + 2 * l4_len + data) & 0xFFFF
            l4_bytes = udp_ports + _UDP_VAR.pack(l4_len, value or 0xFFFF)
        out.append(b"".join((prefix, ip, l4_bytes, chunk)))
    return out
