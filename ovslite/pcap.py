"""pcap output and one-line frame summaries for `ovslite-ctl capture`.

Writes classic libpcap files (microsecond timestamps, LINKTYPE_ETHERNET), the
format `tcpdump -r -` reads from a pipe. `summary` decodes just enough of a
frame (Ethernet, 802.1Q, ARP, IPv4/IPv6, TCP/UDP/ICMP) for one tcpdump-like line.
"""

from __future__ import annotations

import ipaddress
import struct
import time

from .vnet import format_mac

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
GLOBAL_HEADER = struct.Struct("=IHHiIII")
RECORD_HEADER = struct.Struct("=IIII")


def global_header(snaplen: int = 262144) -> bytes:
    return GLOBAL_HEADER.pack(PCAP_MAGIC, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET)


def record(ts: float, orig_len: int, data: bytes) -> bytes:
    sec = int(ts)
    usec = int((ts - sec) * 1_000_000)
    return RECORD_HEADER.pack(sec, usec, len(data), orig_len) + data


def iter_records(blob: bytes):
    """(unix time, original length, data) for each record of a headerless pcap blob."""
    offset, end = 0, len(blob)
    while offset + RECORD_HEADER.size <= end:
        sec, usec, caplen, orig_len = RECORD_HEADER.unpack_from(blob, offset)
        offset += RECORD_HEADER.size
        yield sec + usec / 1e6, orig_len, blob[offset : offset + caplen]
        offset += caplen


ETHERTYPES = {0x0800: "IPv4", 0x0806: "ARP", 0x86DD: "IPv6", 0x8100: "802.1Q", 0x88CC: "LLDP"}
IP_PROTOS = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMP6"}


def _l4(proto: int, payload: bytes, src: str, dst: str) -> str:
    if proto in (6, 17) and len(payload) >= 4:
        sport, dport = struct.unpack_from("!HH", payload)
        name = IP_PROTOS[proto]
        flags = ""
        if proto == 6 and len(payload) >= 14:
            bits = payload[13]
            flags = " [" + "".join(c for b, c in enumerate("FSRPAU") if bits >> b & 1) + "]"
        return f"{src}.{sport} > {dst}.{dport}: {name}{flags}"
    if proto in (1, 58) and payload:
        kinds = {0: "echo reply", 8: "echo request", 128: "echo request", 129: "echo reply"}
        return f"{src} > {dst}: {IP_PROTOS[proto]} {kinds.get(payload[0], f'type {payload[0]}')}"
    return f"{src} > {dst}: {IP_PROTOS.get(proto, f'proto {proto}')}"


def _l3(ethertype: int, p: bytes) -> str:
    try:
        if ethertype == 0x0800 and len(p) >= 20:
            ihl = (p[0] & 0x0F) * 4
            src, dst = (str(ipaddress.IPv4Address(p[i : i + 4])) for i in (12, 16))
            return _l4(p[9], p[ihl:], src, dst)
        if ethertype == 0x86DD and len(p) >= 40:
            src, dst = (str(ipaddress.IPv6Address(p[i : i + 16])) for i in (8, 24))
            return _l4(p[6], p[40:], src, dst)
        if ethertype == 0x0806 and len(p) >= 28:
            op = {1: "who-has", 2: "reply"}.get(struct.unpack_from("!H", p, 6)[0], "op?")
            spa, tpa = (str(ipaddress.IPv4Address(p[i : i + 4])) for i in (14, 24))
            return f"ARP {op} {tpa} tell {spa}" if op == "who-has" else f"ARP reply {spa} is-at {format_mac(p[8:14])}"
    except (ValueError, struct.error):
        pass
    return ETHERTYPES.get(ethertype, f"ethertype 0x{ethertype:04x}")


def summary(ts: float, port: str, direction: str, orig_len: int, frame: bytes) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1e6):06d}"
    if len(frame) < 14:
        return f"{stamp} {port} {direction:<3} truncated frame, length {orig_len}"
    head = f"{stamp} {port} {direction:<3} {format_mac(frame[6:12])} > {format_mac(frame[0:6])}"
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    offset = 14
    vlan = ""
    while ethertype in (0x8100, 0x88A8) and len(frame) >= offset + 4:
        tci, ethertype = struct.unpack_from("!HH", frame, offset)
        vlan += f" vlan {tci & 0xFFF} p {tci >> 13},"
        offset += 4
    return f"{head},{vlan} length {orig_len}: {_l3(ethertype, frame[offset:])}"
