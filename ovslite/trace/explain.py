"""Trace's explanations: why a port is or is not reached, said in words.

Pure functions of a Port's configuration and state (VLAN role, up/down,
isolation, split horizon, flood flags) and of the frame's VLAN form; they
decide nothing, the forwarding core (Bridge.reach, Bridge.emit) does that and
these say why.

Limits: `not_reached` names the first reason found in a fixed order; a port
excluded for several reasons is described by one.
"""

from __future__ import annotations

from ..bridge import Port

#: Bridge.source_drop's reasons, said in words
SOURCE_DROPS = {"multicast-source": "a group address", "zero-source": "all zeros",
                "own-source": "the bridge's own address"}
#: what uses the reserved group addresses (802.1D table 7-10; others are reserved)
LINK_LOCAL = {0x00: "STP", 0x01: "PAUSE", 0x02: "LACP, slow protocols", 0x03: "802.1X",
              0x0E: "LLDP"}


def link_local_name(mac: bytes) -> str:
    return LINK_LOCAL.get(mac[5], "reserved")



def vlan_ranges(vlans) -> str:
    """[10, 20, 21, 22] -> '10,20-22' (set-port's trunks syntax)."""
    out: list[str] = []
    vids = sorted(vlans)
    i = 0
    while i < len(vids):
        j = i
        while j + 1 < len(vids) and vids[j + 1] == vids[j] + 1:
            j += 1
        out.append(str(vids[i]) if i == j else f"{vids[i]}-{vids[j]}")
        i = j + 1
    return ",".join(out)


def vlan_role(port: Port) -> str:
    """'access port, tag 10', 'trunk port, trunks 10,20-30', 'native-untagged port, native VLAN 5, all VLANs'."""
    trunks = "all VLANs" if port.trunks is None else f"trunks {vlan_ranges(port.trunks)}"
    if port.mode == "access":
        return f"access port, tag {port.tag}"
    if port.mode == "trunk":
        return f"trunk port, {trunks}"
    return f"{port.mode} port, native VLAN {port.tag}, {trunks}"


def _state(port: Port) -> str:
    return "up" if port.up else f"down ({port.reason or 'down'})"


def _flag_names(kind: str) -> str:
    return {"broadcast": "bcast-flood", "multicast": "mcast-flood", "unknown": "flood"}[kind]


def not_reached(in_port: Port, p: Port, vlan: int, kind: str | None = None) -> str:
    """Why `p` is not in in_port's reach for `vlan` (kind: the flood list's flag, if any)."""
    if p is in_port:
        return "the ingress port"
    if not p.up:
        return _state(p)
    if not p.stp_forwarding:
        return f"blocked by spanning tree ({p.stp_block or 'not forwarding'})"
    if in_port.isolated and p.isolated:
        return f"isolated, as is {in_port.name}"
    if in_port.split_horizon and p.split_horizon:
        return f"split horizon: a tunnel, as is {in_port.name}"
    if p.egress_tagged(vlan) is None:
        return f"VLAN {vlan} not carried: {vlan_role(p)}"
    if kind is not None:
        flag = _flag_names(kind)
        if not getattr(p, flag.replace("-", "_")):
            return f"{flag} off"
    return "excluded"


def egress_form(vlan: int, has_tag: bool, vid: int, tagged: bool) -> str:
    if tagged:
        if not has_tag:
            return f"VLAN {vlan} tagged, tag pushed"
        if vid != vlan:
            return f"VLAN {vlan} tagged, VID rewritten {vid} -> {vlan}"
        return f"VLAN {vlan} tagged, tag kept"
    what = f"VLAN {vlan} untagged" if vlan else "untagged"
    return f"{what}, tag stripped" if has_tag else what

