"""MAC table records packed as arrays of C structs inside one attribute.

MAC events and GET_FDB entries come in packed batches rather than one nest per
entry because a flood learns 100k MACs a second and a pyroute2 message costs
~0.1 ms to encode; a packed record costs ~1 us.
"""

from __future__ import annotations

import errno
import ipaddress
import struct

from .commands import ProtocolError

#: One MAC event inside OVSLITE_ATTR_FDB_EVENTS (host byte order, 52 bytes): time in
#: ns since the epoch, VLAN, kind (FDB_EVENT_KINDS), pad, MAC, then the port and, for
#: a move, the port it moved from, as NUL-padded names (IFNAMSIZ, like struct ifreq).
#: MAC events come in packed batches because a flood learns 100k MACs a second and a
#: pyroute2 message costs ~0.1 ms to encode; records cost ~1 us.
FDB_EVENT = struct.Struct("=QHBx6s16s16s2x")
FDB_EVENT_KINDS = {1: "learned", 2: "moved", 3: "aged", 4: "evicted"}

#: One MAC table entry inside OVSLITE_ATTR_FDB_ENTRIES (a GET_FDB reply to a request
#: with OVSLITE_ATTR_PACKED; host byte order, 36 bytes): port number, age in seconds,
#: VLAN, flags (FDB_ENTRY_STATIC), pad, MAC, pad, then the port's NUL-padded name.
#: 100,000 entries as one message each took ~8 s to encode; packed, ~0.1 s.
FDB_ENTRY = struct.Struct("=IIHBx6s2x16s")
FDB_ENTRY_STATIC = 0x1
#: FDB_ENTRY records per GET_FDB message (36 KB, well under MAX_MSG_SIZE)
FDB_ENTRY_BATCH = 1024
#: Inside OVSLITE_ATTR_FDB_REMOTES, beside FDB_ENTRIES (20 bytes): the index of an
#: entry in that message's FDB_ENTRIES, the IP version (4 or 6), pad, and the
#: address (IPv4 in the first 4 bytes) of the tunnel remote the MAC is behind.
#: Only entries on ports with several remotes whose remote is known have one.
FDB_REMOTE = struct.Struct("=HBx16s")


def pack_fdb_event(kind: int, time_ns: int, vlan: int, mac: bytes, port: str, old_port: str) -> bytes:
    return FDB_EVENT.pack(time_ns, vlan, kind, bytes(mac), port.encode(), old_port.encode())


def unpack_fdb_events(blob: bytes) -> list[dict]:
    """OVSLITE_ATTR_FDB_EVENTS -> [{'time', 'event', 'vlan', 'mac', 'port'[, 'old_port']}]."""
    if len(blob) % FDB_EVENT.size:
        raise ProtocolError(errno.EPROTO, f"FDB_EVENTS of {len(blob)} bytes is not a whole "
                            f"number of {FDB_EVENT.size}-byte records")
    out = []
    for time_ns, vlan, kind, mac, port, old in FDB_EVENT.iter_unpack(blob):
        event = {"time": time_ns, "event": "mac-" + FDB_EVENT_KINDS.get(kind, str(kind)),
                 "vlan": vlan, "mac": ":".join(f"{b:02x}" for b in mac),
                 "port": port.rstrip(b"\0").decode(errors="replace")}
        if old.strip(b"\0"):
            event["old_port"] = old.rstrip(b"\0").decode(errors="replace")
        out.append(event)
    return out


def pack_fdb_remote(index: int, remote: str) -> bytes:
    address = ipaddress.ip_address(remote)
    return FDB_REMOTE.pack(index, address.version, address.packed)


def unpack_fdb_entries(blob: bytes, remotes: bytes = b"") -> list[dict]:
    """OVSLITE_ATTR_FDB_ENTRIES -> [{'port', 'port_no', 'vlan', 'mac', 'age', 'static'}],
    with 'remote' added from OVSLITE_ATTR_FDB_REMOTES to the entries it names."""
    if len(blob) % FDB_ENTRY.size:
        raise ProtocolError(errno.EPROTO, f"FDB_ENTRIES of {len(blob)} bytes is not a whole "
                            f"number of {FDB_ENTRY.size}-byte records")
    names: dict[bytes, str] = {}  # a port's name is decoded once, not once per entry
    out = []
    for port_no, age, vlan, flags, mac, port in FDB_ENTRY.iter_unpack(blob):
        name = names.get(port)
        if name is None:
            name = names[port] = port.rstrip(b"\0").decode(errors="replace")
        out.append({"port": name, "port_no": port_no, "vlan": vlan, "mac": mac.hex(":"),
                    "age": age, "static": bool(flags & FDB_ENTRY_STATIC)})
    if len(remotes) % FDB_REMOTE.size:
        raise ProtocolError(errno.EPROTO, f"FDB_REMOTES of {len(remotes)} bytes is not a whole "
                            f"number of {FDB_REMOTE.size}-byte records")
    for index, version, address in FDB_REMOTE.iter_unpack(remotes):
        if index >= len(out) or version not in (4, 6):
            raise ProtocolError(errno.EPROTO, f"FDB_REMOTES names entry {index} (IPv{version}) "
                                f"of {len(out)}")
        out[index]["remote"] = str(ipaddress.ip_address(address[:4] if version == 4 else address))
    return out


