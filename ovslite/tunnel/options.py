"""Tunnel port options: OVS's names and defaults, checked whole, one line per error.

`parse_options(type, {"remote_ip": ..., ...})` returns a frozen TunnelOptions or
raises ValueError("<option>: <why>"), the option named first, so `add-port`
can refuse a change before anything is applied. Names, defaults and ranges
follow ovs-vswitchd.conf.db(5), Interface table, options:* for the userspace
datapath; the values OVS takes that ovslite cannot honour (`flow`-based keys
and remotes, ttl=inherit, multicast remotes) are refused with the reason.

Limits: no in_key/out_key split, no Geneve TLV options to send, no
VXLAN-GBP/GPE extensions, no `packet_type=legacy_l3`; one address family per
port (every remote and local_ip IPv4, or every one IPv6).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: UDP destination port per type (None: not UDP)
DEFAULT_DST_PORT = {"vxlan": 4789, "geneve": 6081, "gre": None}
TUNNEL_TYPES = tuple(DEFAULT_DST_PORT)
#: key field width in bits: a 24-bit VNI, or RFC 2890's 32-bit GRE key
KEY_BITS = {"vxlan": 24, "geneve": 24, "gre": 32}
REFUSED_TYPES = {
    "lisp": "lisp carries IP packets, not Ethernet frames (L3-only); "
            "Open vSwitch's userspace datapath has no encapsulation for it either",
    "stt": "stt is obsolete (an expired draft); "
           "Open vSwitch's userspace datapath has no encapsulation for it either",
}
KNOWN_OPTIONS = frozenset({"remote_ip", "local_ip", "key", "dst_port", "csum", "ttl", "tos",
                           "df_default"})

IPV4_HLEN = 20
IPV6_HLEN = 40
UDP_HLEN = 8
ETH_HLEN = 14
#: tunnel header after the outer IP header, per type (GRE: without key or checksum)
TUNNEL_HLEN = {"vxlan": UDP_HLEN + 8, "geneve": UDP_HLEN + 8, "gre": 4}
GRE_KEY_LEN = 4
GRE_CSUM_LEN = 4


@dataclass(frozen=True)
class TunnelOptions:
    type: str
    remote_ips: tuple[IPAddress, ...]
    local_ip: IPAddress | None = None
    key: int = 0
    #: GRE only: a key field is sent (and expected) only when `key` was given, as in OVS
    key_present: bool = False
    dst_port: int | None = None
    #: outer UDP / GRE checksum on send (received ones are checked whatever this says)
    csum: bool = False
    ttl: int = 64
    #: None: copy the inner IP header's TOS ("inherit")
    tos: int | None = 0
    df_default: bool = True

    @property
    def ipv6(self) -> bool:
        return self.remote_ips[0].version == 6

    @property
    def overhead(self) -> int:
        """Bytes a frame grows by on the wire: outer IP + tunnel header + inner Ethernet."""
        ip_len = IPV6_HLEN if self.ipv6 else IPV4_HLEN
        tunnel_len = TUNNEL_HLEN[self.type]
        if self.type == "gre":
            tunnel_len += (GRE_KEY_LEN if self.key_present else 0) + (GRE_CSUM_LEN if self.csum else 0)
        return ip_len + tunnel_len + ETH_HLEN

    def inner_mtu(self, path_mtu: int) -> int:
        """The largest inner IP packet (an MTU, as `ip link` shows) that fits `path_mtu`."""
        return path_mtu - self.overhead


def _fail(option: str, why: str) -> ValueError:
    return ValueError(f"{option}: {why}")


def _parse_ip(option: str, text: str) -> IPAddress:
    text = text.strip()
    if text == "flow":
        raise _fail(option, "'flow' (set by OpenFlow actions) is not supported by ovslite")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise _fail(option, f"{text!r} is not an IP address") from None
    if addr.is_unspecified:
        raise _fail(option, f"{text!r} is the unspecified address")
    if addr.is_multicast or (addr.version == 4 and addr == ipaddress.IPv4Address("255.255.255.255")):
        raise _fail(option, f"{text!r} is a multicast or broadcast address "
                            "(ovslite replicates floods itself: list each remote)")
    return addr


def _parse_remotes(text: str) -> tuple[IPAddress, ...]:
    parts = text.split(",")
    if not text.strip() or any(not p.strip() for p in parts):
        raise _fail("remote_ip", f"{text!r} has an empty entry (expected IP[,IP...])")
    remotes = tuple(_parse_ip("remote_ip", p) for p in parts)
    seen: set[IPAddress] = set()
    for addr in remotes:
        if addr in seen:
            raise _fail("remote_ip", f"{addr} is listed twice")
        seen.add(addr)
    if len({a.version for a in remotes}) > 1:
        raise _fail("remote_ip", "mixes IPv4 and IPv6 remotes (one family per port)")
    return remotes


def _parse_int(option: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text.strip(), 0)
    except ValueError:
        raise _fail(option, f"{text!r} is not a number") from None
    if not low <= value <= high:
        raise _fail(option, f"{value} is out of range ({low}-{high})")
    return value


def _parse_bool(option: str, text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise _fail(option, f"{text!r} is not a boolean (true or false)")
    return value == "true"


def parse_options(tunnel_type: str, options: Mapping[str, str]) -> TunnelOptions:
    """Validate a tunnel port's options as a whole; ValueError naming the first bad option."""
    if tunnel_type in REFUSED_TYPES:
        raise ValueError(f"type {tunnel_type}: not supported: {REFUSED_TYPES[tunnel_type]}")
    if tunnel_type not in DEFAULT_DST_PORT:
        raise ValueError(f"type {tunnel_type}: not a tunnel type (known: {', '.join(TUNNEL_TYPES)})")
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise _fail(unknown[0], f"unknown option for a {tunnel_type} port "
                                f"(known: {', '.join(sorted(KNOWN_OPTIONS))})")
    if "remote_ip" not in options:
        raise _fail("remote_ip", f"required for a {tunnel_type} port (remote_ip=IP[,IP...])")
    remotes = _parse_remotes(options["remote_ip"])

    local_ip = None
    if "local_ip" in options:
        local_ip = _parse_ip("local_ip", options["local_ip"])
        if local_ip.version != remotes[0].version:
            raise _fail("local_ip", f"{local_ip} is IPv{local_ip.version} but remote_ip "
                                    f"is IPv{remotes[0].version}")

    key, key_present = 0, "key" in options
    if key_present:
        if options["key"].strip() == "flow":
            raise _fail("key", "'flow' (set by OpenFlow actions) is not supported by ovslite")
        bits = KEY_BITS[tunnel_type]
        key = _parse_int("key", options["key"], 0, (1 << bits) - 1)

    dst_port = DEFAULT_DST_PORT[tunnel_type]
    if "dst_port" in options:
        if dst_port is None:
            raise _fail("dst_port", f"a {tunnel_type} port has no UDP port")
        dst_port = _parse_int("dst_port", options["dst_port"], 1, 65535)

    # OVS: unset means on for UDP over IPv6 (RFC 8200 wants UDP checksums there),
    # off for UDP over IPv4 and for GRE
    csum_default = remotes[0].version == 6 and tunnel_type != "gre"
    csum = _parse_bool("csum", options["csum"]) if "csum" in options else csum_default
    df_default = _parse_bool("df_default", options["df_default"]) if "df_default" in options else True

    ttl = 64
    if "ttl" in options:
        if options["ttl"].strip() == "inherit":
            raise _fail("ttl", "'inherit' is not supported by ovslite (give 1-255)")
        ttl = _parse_int("ttl", options["ttl"], 1, 255)

    tos: int | None = 0
    if "tos" in options:
        tos = None if options["tos"].strip() == "inherit" else _parse_int("tos", options["tos"], 0, 255)
        if tos is not None and tos & 0x03:
            raise _fail("tos", f"{tos} sets ECN bits (the low 2 bits must be 0: ECN is inherited)")

    return TunnelOptions(tunnel_type, remotes, local_ip, key, key_present, dst_port, csum, ttl,
                         tos, df_default)
