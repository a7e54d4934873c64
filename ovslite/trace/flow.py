"""Trace's input: the flow the user types, checked, and the frame built from it.

`parse_flow` takes the CLI's key=value words (in_port, dl_src, dl_dst,
dl_vlan, dl_type); `build_packet` turns a Flow into a minimum-size Ethernet
frame with a vnet header, as the datapath would receive it. Every bad field is
a ValueError with a one-line message naming the field.

Limits: only the Ethernet header can be set (the FIELDS); the rest of the
frame is zero padding; one 802.1Q tag at most.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .. import vnet
from ..bridge import RESERVED_VID
from ..vnet import format_mac, parse_mac

FIELDS = ("in_port", "dl_src", "dl_dst", "dl_vlan", "dl_type")
REQUIRED = ("in_port", "dl_src", "dl_dst")
DEFAULT_DL_TYPE = 0x0800
#: frame length before padding stops (Ethernet minimum without the FCS)
MIN_FRAME = 60


@dataclass
class Flow:
    in_port: str
    dl_src: bytes
    dl_dst: bytes
    dl_vlan: int | None = None  # None: untagged; 0: priority-tagged
    dl_type: int = DEFAULT_DL_TYPE

    def __str__(self) -> str:
        vlan = f",dl_vlan={self.dl_vlan}" if self.dl_vlan is not None else ""
        return (f"in_port={self.in_port},dl_src={format_mac(self.dl_src)},"
                f"dl_dst={format_mac(self.dl_dst)}{vlan},dl_type={self.dl_type:#06x}")



def parse_vlan(text) -> int:
    """A VID for a tag: 0-4095 (4095 is reserved, so a trace can show it dropped)."""
    try:
        vid = int(str(text), 0)
    except ValueError:
        raise ValueError(f"dl_vlan: {text!r} is not a VLAN number") from None
    if not 0 <= vid <= RESERVED_VID:
        raise ValueError(f"dl_vlan: VLAN {vid} is out of range (0-{RESERVED_VID})")
    return vid


def parse_dl_type(text) -> int:
    try:
        value = int(str(text), 0)
    except ValueError:
        raise ValueError(f"dl_type: {text!r} is not a number (e.g. 0x0800)") from None
    return check_dl_type(value)


def check_dl_type(value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"dl_type: {value:#x} is out of range (0-0xffff)")
    if value == vnet.TPID_8021Q:
        raise ValueError("dl_type: 0x8100 is the VLAN tag itself; use dl_vlan=N")
    return value


def parse_flow(args: Iterable[str]) -> Flow:
    """key=value words (each may hold several, comma-separated) -> Flow; ValueError if bad."""
    values: dict[str, str] = {}
    for arg in args:
        for item in arg.replace(",", " ").split():
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"invalid field {item!r}: expected key=value")
            if key not in FIELDS:
                raise ValueError(f"unknown field {key!r} (known: {', '.join(FIELDS)})")
            if key in values:
                raise ValueError(f"field {key} given more than once")
            values[key] = value
    for key in REQUIRED:
        if key not in values:
            raise ValueError(f"missing field {key}= (needed: {', '.join(REQUIRED)})")
    if not values["in_port"]:
        raise ValueError("in_port: empty port name")
    macs = {}
    for key in ("dl_src", "dl_dst"):
        try:
            macs[key] = parse_mac(values[key])
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    src, dst = macs["dl_src"], macs["dl_dst"]
    vlan = parse_vlan(values["dl_vlan"]) if "dl_vlan" in values else None
    dl_type = parse_dl_type(values["dl_type"]) if "dl_type" in values else DEFAULT_DL_TYPE
    return Flow(values["in_port"], src, dst, vlan, dl_type)


def build_packet(flow: Flow, length: int = MIN_FRAME) -> bytes:
    """Ethernet header (+ an 802.1Q tag if dl_vlan) + dl_type, zero-padded, with a vnet header."""
    frame = flow.dl_dst + flow.dl_src
    if flow.dl_vlan is not None:
        frame += vnet.TPID_8021Q.to_bytes(2, "big") + flow.dl_vlan.to_bytes(2, "big")
    frame += flow.dl_type.to_bytes(2, "big")
    return vnet.ethernet(frame.ljust(length, b"\0"))

