"""Receive coalescing (GRO) of decapsulated TCP segments, as the kernel's tcp_gro_receive.

A remote ovslite (or any sender without a whole-frame path) delivers a TCP
stream as MTU-sized segments; passing each through the bridge and out of a
port one by one costs a Python pass and a syscall per 1.4 KB. `coalesce` joins
runs of consecutive segments of one flow, within one received batch, into one
GSO frame (vnet header: NEEDS_CSUM + TCPv4/TCPv6 + gso_size), which the egress
port's kernel segments again or hands whole to a local receiver.

A run continues only while: same Ethernet and IP/TCP headers except the
fields that change per segment (IPv4 total length, id, checksum; TCP seq,
checksum), contiguous sequence numbers, every segment but the last of the
same payload size and flags exactly ACK (the last may add PSH), the result
under 64 KB. Each segment's TCP checksum is verified before it joins (a bad
one is passed on alone, untouched, for the receiver to drop): merging must
not bless a corrupted segment with a fresh checksum.

Limits: untagged IPv4 without options-bearing fragments, and IPv6 without
extension headers; frames that fit nothing pass through unchanged (zero
vnet header, or what `received_header` gave them).
"""

from __future__ import annotations

import struct

from ..vnet import VIRTIO_NET_HDR_F_NEEDS_CSUM, VNET_HDR, VNET_HDR_LEN
from .checksum import checksum, fold, ones_sum, pseudo_header_sum
from .segment import GSO_TCPV4, GSO_TCPV6

MAX_IP_LEN = 65535
ACK, PSH = 0x10, 0x08
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


def _tcp_layout(frame):
    """(l3 offset kind 4/6, l4 offset, tcp header length, payload length) or None."""
    if len(frame) < 54:
        return None
    if frame[12] == 0x08 and frame[13] == 0x00:
        if frame[14] != 0x45 or frame[23] != 6 or (frame[20] & 0x3F) or frame[21]:
            return None  # IPv4 options, not TCP, or a fragment
        ip_len = (frame[16] << 8) | frame[17]
        l4 = 34
        version = 4
        l4_len = ip_len - 20
    elif frame[12] == 0x86 and frame[13] == 0xDD:
        if frame[20] != 6 or len(frame) < 74:
            return None
        l4 = 54
        version = 6
        l4_len = (frame[18] << 8) | frame[19]
    else:
        return None
    tcp_hlen = (frame[l4 + 12] >> 4) * 4
    payload = l4_len - tcp_hlen
    if tcp_hlen < 20 or payload <= 0 or l4 + l4_len > len(frame):
        return None
    return version, l4, tcp_hlen, payload


def _checksum_ok(frame, version: int, l4: int, l4_len: int) -> bool:
    if version == 4:
        pseudo = pseudo_header_sum(frame[26:30], frame[30:34], 6, l4_len)
    else:
        pseudo = pseudo_header_sum(frame[22:38], frame[38:54], 6, l4_len)
    return ones_sum(frame[l4:l4 + l4_len], pseudo) == 0xFFFF


def _same_flow_headers(first, frame, version: int, l4: int, tcp_hlen: int) -> bool:
    """Headers equal but for the per-segment fields (see the module doc)."""
    if version == 4:
        # Ethernet + IPv4 tos..., skipping total length (16-17), id (18-19), checksum (24-25)
        if first[:16] != frame[:16] or first[20:24] != frame[20:24] or first[26:34] != frame[26:34]:
            return False
    elif first[:18] != frame[:18] or first[20:54] != frame[20:54]:
        return False
    # TCP ports, then ack/offset/window/urgent and options, skipping seq, flags and checksum
    return (first[l4:l4 + 4] == frame[l4:l4 + 4]
            and first[l4 + 8:l4 + 13] == frame[l4 + 8:l4 + 13]
            and first[l4 + 14:l4 + 16] == frame[l4 + 14:l4 + 16]
            and first[l4 + 18:l4 + tcp_hlen] == frame[l4 + 18:l4 + tcp_hlen])


def _merge(run: list, version: int, l4: int, tcp_hlen: int) -> bytes:
    """One GSO packet (vnet header + frame) for a run of checked segments."""
    first = run[0]
    head = bytearray(first[:l4 + tcp_hlen])
    payloads = [frame[l4 + tcp_hlen:l4 + tcp_hlen + size] for frame, size in
                ((f, _payload_len(f, version, l4, tcp_hlen)) for f in run)]
    total = sum(map(len, payloads))
    gso_size = len(payloads[0])
    l4_len = tcp_hlen + total
    head[l4 + 13] = run[-1][l4 + 13]  # the last segment's flags (PSH)
    if version == 4:
        head[16:18] = _U16.pack(20 + l4_len)
        head[24:26] = b"\0\0"
        head[24:26] = _U16.pack(checksum(head[14:34]))
        pseudo = pseudo_header_sum(head[26:30], head[30:34], 6, l4_len)
        gso_type = GSO_TCPV4
    else:
        head[18:20] = _U16.pack(l4_len)
        pseudo = pseudo_header_sum(head[22:38], head[38:54], 6, l4_len)
        gso_type = GSO_TCPV6
    head[l4 + 16:l4 + 18] = _U16.pack(fold(pseudo))  # partial: the egress kernel finishes it
    vnet = VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type, l4 + tcp_hlen, gso_size, l4, 16)
    return b"".join((vnet, head, *payloads))


def _payload_len(frame, version: int, l4: int, tcp_hlen: int) -> int:
    if version == 4:
        return ((frame[16] << 8) | frame[17]) - 20 - tcp_hlen
    return ((frame[18] << 8) | frame[19]) - tcp_hlen


def coalesce(packets: list) -> list:
    """`packets` (vnet header + frame, in arrival order) with runs of one TCP
    flow's consecutive segments joined; the order of everything else is kept."""
    out: list = []
    run: list = []
    run_key = None  # (version, l4, tcp_hlen, gso payload size, next seq)
    run_len = 0

    def flush():
        nonlocal run, run_key, run_len
        if len(run) == 1:
            out.append(run_packet[0])
        elif run:
            out.append(_merge(run, run_key[0], run_key[1], run_key[2]))
        run, run_key, run_len = [], None, 0
        run_packet.clear()

    run_packet: list = []
    for packet in packets:
        frame = memoryview(packet)[VNET_HDR_LEN:]
        layout = _tcp_layout(frame) if packet[0] == 0 and packet[1] == 0 else None
        if layout is None:
            flush()
            out.append(packet)
            continue
        version, l4, tcp_hlen, payload = layout
        flags = frame[l4 + 13]
        if flags & ~PSH != ACK or not _checksum_ok(frame, version, l4, tcp_hlen + payload):
            flush()
            out.append(packet)
            continue
        seq = _U32.unpack_from(frame, l4 + 4)[0]
        if run and (run_key[:3] == (version, l4, tcp_hlen) and run_key[4] == seq
                    and payload <= run_key[3] and run_len + payload + l4 + tcp_hlen <= MAX_IP_LEN
                    and _same_flow_headers(run[0], frame, version, l4, tcp_hlen)):
            run.append(frame)
            run_len += payload
            run_key = (version, l4, tcp_hlen, run_key[3], (seq + payload) & 0xFFFFFFFF)
            if payload < run_key[3] or flags & PSH:  # a short or pushed segment ends a run
                flush()
            continue
        flush()
        run, run_packet[:] = [frame], [packet]
        run_key = (version, l4, tcp_hlen, payload, (seq + payload) & 0xFFFFFFFF)
        run_len = payload
        if flags & PSH:
            flush()
    flush()
    return out
