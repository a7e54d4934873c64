"""The control protocol's messages, declared as data with pyroute2's netlink classes.

Shared by the daemon (ovslite.control.server) and the CLI (ovslite_ctl); the
wire format is specified in docs/control-protocol.md.

Every request and reply is one datagram on a SOCK_SEQPACKET Unix socket:
struct nlmsghdr (type OVSLITE_FAMILY) + struct genlmsghdr (`cmd`, `version`) +
attributes. One attribute space (OVSLITE_ATTR_*) describes every object;
nested sets exist only for lists (key/value pairs, counters, ports) and for
the counter block. Acks and errors are NLMSG_ERROR with the kernel's extended
ack layout (capped: the request's header only, then NLMSGERR_ATTR_MSG);
dumps end with NLMSG_DONE.

Nothing here is packed by hand: the classes below are the declaration. The
request parser only reads the four-byte attribute headers itself, to refuse
malformed lengths before pyroute2 (which clamps lengths and decodes lazily)
is asked to decode them.

Limits: MAX_MSG_SIZE bytes per datagram either way; attributes nest at most
MAX_DEPTH deep; strings are NUL-terminated UTF-8.
"""

from __future__ import annotations

import enum
import errno
import struct
from dataclasses import dataclass, field

from pyroute2.netlink import (
    NLA_F_NESTED,
    NLA_F_NET_BYTEORDER,
    NLM_F_ACK,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLM_F_DUMP,
    NLM_F_MULTI,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    genlmsg,
    nla,
    nlmsg,
)

from .. import pyroute2_lazy

# Decoding a request must leave nothing behind: pyroute2 memoises every distinct
# attribute header in a module-level dict, unbounded (issue #12).
pyroute2_lazy.bound_caches()

#: nlmsghdr.nlmsg_type of every ovslite request and reply (above NLMSG_MIN_TYPE)
OVSLITE_FAMILY = 0x20
#: genlmsghdr.version; a request with any other version is refused
OVSLITE_PROTOCOL_VERSION = 1
#: largest datagram accepted or sent; the server receives MAX_MSG_SIZE + 1 to detect more
MAX_MSG_SIZE = 65536
MAX_DEPTH = 8
NLMSG_HDRLEN = 16
GENL_HDRLEN = 20


class Cmd(enum.IntEnum):
    """genlmsghdr.cmd. Numbered in blocks of ten so each family of commands can grow."""

    UNSPEC = 0
    GET_VERSION = 1
    ADD_BR = 10
    DEL_BR = 11
    GET_BR = 12
    SET_BR = 13
    ADD_PORT = 20
    DEL_PORT = 21
    GET_PORT = 22
    SET_PORT = 23
    GET_FDB = 30
    FDB_ADD = 31
    FDB_DEL = 32
    FDB_FLUSH = 33
    FDB_STATS = 34
    CAPTURE = 40
    MONITOR = 41
    TRACE = 42
    GET_FLOW = 50


@dataclass(frozen=True)
class CommandSpec:
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    dump: bool = False  # replies are NLM_F_MULTI messages ended by NLMSG_DONE
    stream: bool = False  # a dump that lasts: messages follow as events happen


#: the commands this daemon implements; any other cmd is refused with EOPNOTSUPP
COMMANDS: dict[Cmd, CommandSpec] = {
    Cmd.GET_VERSION: CommandSpec(),
    Cmd.ADD_BR: CommandSpec(("bridge",), ("may_exist",)),
    Cmd.DEL_BR: CommandSpec(("bridge",), ("if_exists",)),
    Cmd.GET_BR: CommandSpec((), ("bridge",), dump=True),
    Cmd.SET_BR: CommandSpec(("bridge", "settings")),
    Cmd.ADD_PORT: CommandSpec(("bridge", "port"), ("type", "options", "settings", "may_exist")),
    Cmd.DEL_PORT: CommandSpec(("port",), ("bridge", "if_exists")),
    Cmd.GET_PORT: CommandSpec((), ("bridge", "port"), dump=True),
    Cmd.SET_PORT: CommandSpec(("port", "settings"), ("bridge",)),
    Cmd.GET_FDB: CommandSpec(("bridge",), ("vlan", "packed"), dump=True),
    Cmd.FDB_ADD: CommandSpec(("bridge", "mac", "port"), ("vlan",)),
    Cmd.FDB_DEL: CommandSpec(("bridge", "mac"), ("vlan",)),
    Cmd.FDB_FLUSH: CommandSpec(("bridge",), ("port",)),
    Cmd.FDB_STATS: CommandSpec(("bridge",)),
    Cmd.CAPTURE: CommandSpec(("port",), ("direction", "count"), dump=True, stream=True),
    Cmd.MONITOR: CommandSpec((), ("bridge", "groups"), dump=True, stream=True),
    Cmd.TRACE: CommandSpec(("bridge", "port", "dl_src", "dl_dst"), ("vlan", "dl_type", "generate"),
                           dump=True),
    Cmd.GET_FLOW: CommandSpec((), ("bridge",), dump=True),
}


class McGroup(enum.IntFlag):
    """MONITOR's "multicast groups" (OVSLITE_ATTR_GROUPS): which events a monitor gets."""

    CONFIG = 1  # bridge/port added or removed, port settings changed
    STATE = 2  # port up or down, with the reason
    FDB = 4  # MAC learned, moved, aged out, evicted


MCGRP_ALL = int(McGroup.CONFIG | McGroup.STATE | McGroup.FDB)  # plain int: ~ works

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


class ProtocolError(Exception):
    """A request (or reply) that cannot be accepted: errno + one-line message."""

    def __init__(self, err: int, message: str, offset: int | None = None):
        super().__init__(message)
        self.errno = err
        self.offset = offset  # byte offset of the offending attribute, if known


# -- declarations -------------------------------------------------------------
# Attribute numbers are positions in the nla_map tuples: never reorder, only append.


class _Map:
    """A map as a nest of ITEM nests, each holding a key and a value attribute."""

    __slots__ = ()
    item_attrs: tuple[str, str, str] = ("", "", "")  # item, key, value attribute names

    def to_py(self) -> dict:
        item, key, value = self.item_attrs
        return {i.get_attr(key): i.get_attr(value) for i in self.get_attrs(item)}

    @classmethod
    def from_py(cls, value: dict) -> dict:
        item, k, v = cls.item_attrs
        return {"attrs": [(item, {"attrs": [(k, key), (v, val)]}) for key, val in value.items()]}


class kv(nla):
    prefix = "OVSLITE_KV_ATTR_"
    nla_map = (
        ("OVSLITE_KV_ATTR_UNSPEC", "none"),
        ("OVSLITE_KV_ATTR_KEY", "asciiz"),
        ("OVSLITE_KV_ATTR_VALUE", "asciiz"),
    )


class kvlist(_Map, nla):
    """string -> string (options, info)."""

    prefix = "OVSLITE_KVLIST_ATTR_"
    nla_map = (("OVSLITE_KVLIST_ATTR_UNSPEC", "none"), ("OVSLITE_KVLIST_ATTR_ITEM", "kv|nested"))
    kv = kv
    item_attrs = ("OVSLITE_KVLIST_ATTR_ITEM", "OVSLITE_KV_ATTR_KEY", "OVSLITE_KV_ATTR_VALUE")


class counter(nla):
    prefix = "OVSLITE_COUNTER_ATTR_"
    nla_map = (
        ("OVSLITE_COUNTER_ATTR_UNSPEC", "none"),
        ("OVSLITE_COUNTER_ATTR_NAME", "asciiz"),
        ("OVSLITE_COUNTER_ATTR_VALUE", "uint64"),
    )


class counters(_Map, nla):
    """name -> u64 (drop reasons)."""

    prefix = "OVSLITE_COUNTERS_ATTR_"
    nla_map = (("OVSLITE_COUNTERS_ATTR_UNSPEC", "none"), ("OVSLITE_COUNTERS_ATTR_ITEM", "counter|nested"))
    counter = counter
    item_attrs = ("OVSLITE_COUNTERS_ATTR_ITEM", "OVSLITE_COUNTER_ATTR_NAME", "OVSLITE_COUNTER_ATTR_VALUE")


STAT_NAMES = ("rx_packets", "rx_bytes", "rx_dropped", "rx_errors",
              "tx_packets", "tx_bytes", "tx_dropped", "tx_errors")


class stats(nla):
    """Port counters; DROPS breaks rx_dropped + tx_dropped down by reason."""

    prefix = "OVSLITE_STATS_ATTR_"
    nla_map = (
        ("OVSLITE_STATS_ATTR_UNSPEC", "none"),
        *((f"OVSLITE_STATS_ATTR_{n.upper()}", "uint64") for n in STAT_NAMES),
        ("OVSLITE_STATS_ATTR_DROPS", "counters|nested"),
    )
    counters = counters

    def to_py(self) -> dict:
        out = {n: self.get_attr(n, 0) for n in STAT_NAMES}
        drops = self.get_attr("DROPS")
        out["drops"] = drops.to_py() if drops is not None else {}
        return out

    @staticmethod
    def from_py(value: dict) -> dict:
        attrs = [(f"OVSLITE_STATS_ATTR_{n.upper()}", int(value.get(n, 0))) for n in STAT_NAMES]
        attrs.append(("OVSLITE_STATS_ATTR_DROPS", counters.from_py(value.get("drops", {}))))
        return {"attrs": attrs}


#: The one attribute space, used at the top level of every message and for each
#: port of a GET_BR reply. (name, pyroute2 type); the number is the position.
ATTRS = (
    ("OVSLITE_ATTR_UNSPEC", "none"),        # 0
    ("OVSLITE_ATTR_VERSION", "asciiz"),     # 1  daemon version
    ("OVSLITE_ATTR_PROTOCOL", "uint32"),    # 2  protocol version
    ("OVSLITE_ATTR_BRIDGE", "asciiz"),      # 3
    ("OVSLITE_ATTR_PORT", "asciiz"),        # 4
    ("OVSLITE_ATTR_TYPE", "asciiz"),        # 5  port type
    ("OVSLITE_ATTR_OPTIONS", "kvlist|nested"),  # 6  configured key/value options
    ("OVSLITE_ATTR_MAY_EXIST", "flag"),     # 7
    ("OVSLITE_ATTR_IF_EXISTS", "flag"),     # 8
    ("OVSLITE_ATTR_PORT_NO", "uint32"),     # 9
    ("OVSLITE_ATTR_UP", "uint8"),           # 10 1 up, 0 down
    ("OVSLITE_ATTR_REASON", "asciiz"),      # 11 why a port is down
    ("OVSLITE_ATTR_INFO", "kvlist|nested"),  # 12 type-specific facts
    ("OVSLITE_ATTR_STATS", "stats|nested"),  # 13
    ("OVSLITE_ATTR_PORTS", "portlist|nested"),  # 14
    ("OVSLITE_ATTR_VLAN", "uint16"),        # 15
    ("OVSLITE_ATTR_MAC", "l2addr"),         # 16
    ("OVSLITE_ATTR_AGE", "uint32"),         # 17 seconds since last seen
    ("OVSLITE_ATTR_STATIC", "flag"),        # 18
    ("OVSLITE_ATTR_DIRECTION", "asciiz"),   # 19 capture: in, out or both
    ("OVSLITE_ATTR_COUNT", "uint32"),       # 20 capture: frames wanted / captured
    ("OVSLITE_ATTR_PCAP", "cdata"),         # 21 capture: libpcap records (no file header)
    ("OVSLITE_ATTR_DROPPED", "uint64"),     # 22 capture: frames the capture lost
    ("OVSLITE_ATTR_DIRECTIONS", "asciiz"),  # 23 capture: 'i' or 'o' per PCAP record
    ("OVSLITE_ATTR_SETTINGS", "kvlist|nested"),  # 24 port or bridge settings (set-port, set-br)
    ("OVSLITE_ATTR_COUNTERS", "counters|nested"),  # 25 named u64 counters (fdb stats)
    ("OVSLITE_ATTR_GROUPS", "uint32"),      # 26 monitor: McGroup bitmask
    ("OVSLITE_ATTR_EVENT", "asciiz"),       # 27 monitor: what happened
    ("OVSLITE_ATTR_TIME", "uint64"),        # 28 monitor: when, ns since the epoch
    ("OVSLITE_ATTR_FDB_EVENTS", "cdata"),   # 29 monitor: FDB_EVENT records
    ("OVSLITE_ATTR_DL_SRC", "l2addr"),      # 30 trace: the frame's source MAC
    ("OVSLITE_ATTR_DL_DST", "l2addr"),      # 31 trace: the frame's destination MAC
    ("OVSLITE_ATTR_DL_TYPE", "uint16"),     # 32 trace: the frame's EtherType (default 0x0800)
    ("OVSLITE_ATTR_GENERATE", "flag"),      # 33 trace: also inject the frame
    ("OVSLITE_ATTR_TRACE_KIND", "asciiz"),  # 34 trace: step kind (ingress, vlan, ..., final)
    ("OVSLITE_ATTR_TRACE_DETAIL", "asciiz"),  # 35 trace: what the step decided, one line
    ("OVSLITE_ATTR_TRACE_DEPTH", "uint32"),  # 36 trace: bridges crossed before this step
    ("OVSLITE_ATTR_TRACE_OUTPUTS", "portlist|nested"),  # 37 trace: BRIDGE, PORT, VLAN, TRACE_TAGGED
    ("OVSLITE_ATTR_TRACE_TAGGED", "flag"),  # 38 trace: an output leaves tagged
    ("OVSLITE_ATTR_PACKETS", "uint64"),     # 39 flow: frames it sent
    ("OVSLITE_ATTR_BYTES", "uint64"),       # 40 flow: bytes it sent (no virtio_net_hdr)
    ("OVSLITE_ATTR_USED_MS", "uint64"),     # 41 flow: ms since it last sent a frame (or was set up)
    ("OVSLITE_ATTR_PEER", "asciiz"),        # 42 flow hop: the patch port's peer
    ("OVSLITE_ATTR_HOPS", "portlist|nested"),  # 43 flow: patch pairs crossed, PORT and PEER each
    ("OVSLITE_ATTR_OUTPUT", "asciiz"),      # 44 flow: the final egress port
    ("OVSLITE_ATTR_FDB_ENTRIES", "cdata"),  # 45 fdb: FDB_ENTRY records
    ("OVSLITE_ATTR_PACKED", "flag"),        # 46 GET_FDB request: reply with FDB_ENTRIES
)
_ATTR_KIND = {name: kind.split("|")[0] for name, kind in ATTRS}


class _Space:
    """The nested classes the ATTRS declarations refer to by name."""

    __slots__ = ()
    kvlist = kvlist
    stats = stats
    counters = counters


class ovslite_object(_Space, nla):
    """An object (a port in a GET_BR reply) in the OVSLITE_ATTR_* space."""

    prefix = "OVSLITE_ATTR_"
    nla_map = ATTRS


class portlist(nla):
    prefix = "OVSLITE_PORTLIST_ATTR_"
    nla_map = (
        ("OVSLITE_PORTLIST_ATTR_UNSPEC", "none"),
        ("OVSLITE_PORTLIST_ATTR_ITEM", "ovslite_object|nested"),
    )
    ovslite_object = ovslite_object

    def to_py(self) -> list[dict]:
        return [attrs_to_py(i) for i in self.get_attrs("ITEM")]

    @staticmethod
    def from_py(value: list[dict]) -> dict:
        return {"attrs": [("OVSLITE_PORTLIST_ATTR_ITEM", {"attrs": py_to_attrs(v)}) for v in value]}


_Space.portlist = portlist


class ovslitemsg(_Space, genlmsg):
    """Every request and every non-error reply."""

    prefix = "OVSLITE_ATTR_"
    nla_map = ATTRS


class ovslite_errmsg(nlmsg):
    """NLMSG_ERROR as the kernel sends it with NLM_F_CAPPED: errno, the request's
    nlmsghdr, then (NLM_F_ACK_TLVS) extended-ack attributes."""

    prefix = "NLMSGERR_ATTR_"
    fields = (
        ("error", "i"),
        ("orig_length", "I"),
        ("orig_type", "H"),
        ("orig_flags", "H"),
        ("orig_sequence_number", "I"),
        ("orig_pid", "I"),
    )
    nla_map = (
        ("NLMSGERR_ATTR_UNUSED", "none"),
        ("NLMSGERR_ATTR_MSG", "asciiz"),
        ("NLMSGERR_ATTR_OFFS", "uint32"),
    )


class ovslite_donemsg(nlmsg):
    fields = (("error", "i"),)


# -- python values <-> attributes ---------------------------------------------

_CONVERTERS = {"kvlist": kvlist, "stats": stats, "portlist": portlist, "counters": counters}


def py_to_attrs(values: dict) -> list:
    """{'bridge': 'br0', 'may_exist': True, 'options': {...}} -> pyroute2 attrs."""
    attrs = []
    for key, value in values.items():
        if value is None:
            continue
        name = "OVSLITE_ATTR_" + key.upper()
        kind = _ATTR_KIND[name]  # KeyError: a programming error, not user input
        if kind == "flag":
            if value:
                attrs.append((name, True))
        elif kind in _CONVERTERS:
            attrs.append((name, _CONVERTERS[kind].from_py(value)))
        else:
            attrs.append((name, int(value) if kind.startswith("uint") else value))
    return attrs


def attrs_to_py(node) -> dict:
    """A decoded message or object -> {'bridge': 'br0', 'options': {...}, ...}."""
    out = {}
    for slot in node["attrs"]:
        name, inst = slot.cell
        if name == "UNKNOWN":
            continue  # a newer peer's attribute; the parser refuses them in requests
        value = slot.value
        if hasattr(inst, "to_py"):
            value = inst.to_py()
        out[node.nla2name(name)] = value
    return out


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


def unpack_fdb_entries(blob: bytes) -> list[dict]:
    """OVSLITE_ATTR_FDB_ENTRIES -> [{'port', 'port_no', 'vlan', 'mac', 'age', 'static'}]."""
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
    return out


# -- validation ---------------------------------------------------------------

_FIXED_SIZE = {"uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8, "l2addr": 6, "flag": 0}
_NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF


def validate_attrs(node, where: str = "", depth: int = 0) -> None:
    """Refuse unknown attribute types and malformed attributes, recursively.

    Called before the attributes are decoded: pyroute2 clamps bad lengths and
    decodes lazily, so it would otherwise read past an attribute or a nest.
    """
    if depth > MAX_DEPTH:
        raise ProtocolError(errno.EINVAL, f"attributes nested deeper than {MAX_DEPTH}")
    for slot in node["attrs"]:
        name, inst = slot.cell
        off = inst.offset
        raw_len, raw_type = struct.unpack_from("=HH", inst.data, off)
        atype = raw_type & _NLA_TYPE_MASK
        if name == "UNKNOWN" or atype == 0:
            raise ProtocolError(errno.EINVAL, f"unknown attribute type {atype}{where}", off)
        if raw_len < 4 or raw_len > inst.length:
            raise ProtocolError(errno.EINVAL, f"truncated attribute {name}{where}", off)
        payload = bytes(inst.data[off + 4 : off + raw_len])
        kind = type(inst).__name__
        size = _FIXED_SIZE.get(kind)
        if size is not None and len(payload) != size:
            raise ProtocolError(
                errno.EINVAL, f"attribute {name} has {len(payload)} bytes, expected {size}", off
            )
        if kind == "asciiz":
            if not payload.endswith(b"\0") or b"\0" in payload[:-1]:
                raise ProtocolError(errno.EINVAL, f"attribute {name} is not a NUL-terminated string", off)
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError(errno.EINVAL, f"attribute {name} is not valid UTF-8", off) from None
        inst.decode()
        if inst.nla_map:
            validate_attrs(inst, f" in {name}", depth + 1)


# -- requests -----------------------------------------------------------------


@dataclass
class Request:
    cmd: Cmd
    spec: CommandSpec
    flags: int
    values: dict = field(default_factory=dict)


def header_of(data: bytes) -> dict:
    """The nlmsghdr of a datagram (zeros if it is shorter than one)."""
    raw = bytes(data[:NLMSG_HDRLEN]) if len(data) >= NLMSG_HDRLEN else bytes(NLMSG_HDRLEN)
    hdr = nlmsg(raw)
    hdr.decode()
    return dict(hdr["header"])


def parse_request(data: bytes) -> Request:
    """Decode and validate one request datagram; ProtocolError if it is refused."""
    size = len(data)
    if size > MAX_MSG_SIZE:
        raise ProtocolError(errno.EMSGSIZE, f"message larger than {MAX_MSG_SIZE} bytes")
    if size < NLMSG_HDRLEN:
        raise ProtocolError(errno.EINVAL, f"truncated message: {size} bytes, shorter than a netlink header")
    hdr = header_of(data)
    length = hdr["length"]
    if length < NLMSG_HDRLEN or length > size:
        raise ProtocolError(errno.EINVAL, f"truncated message: header says {length} bytes, datagram has {size}")
    if size - length >= 4:  # up to 3 bytes of alignment padding are tolerated
        raise ProtocolError(errno.EINVAL, f"{size - length} bytes after the message (one message per datagram)")
    if hdr["type"] != OVSLITE_FAMILY:
        raise ProtocolError(errno.EOPNOTSUPP, f"unknown message type {hdr['type']:#x} (expected {OVSLITE_FAMILY:#x})")
    if not hdr["flags"] & NLM_F_REQUEST:
        raise ProtocolError(errno.EINVAL, "not a request (NLM_F_REQUEST is not set)")
    if length < GENL_HDRLEN:
        raise ProtocolError(errno.EINVAL, "truncated message: no room for the generic netlink header")
    msg = ovslitemsg(bytes(data[:length]))
    try:
        msg.decode()
    except Exception as exc:  # pyroute2 raises assorted errors on garbage
        raise ProtocolError(errno.EINVAL, f"malformed message: {exc}") from None
    if msg["version"] != OVSLITE_PROTOCOL_VERSION:
        raise ProtocolError(errno.EOPNOTSUPP, f"protocol version {msg['version']} not supported "
                            f"(this daemon speaks {OVSLITE_PROTOCOL_VERSION})")
    try:
        cmd = Cmd(msg["cmd"])
        spec = COMMANDS[cmd]
    except (ValueError, KeyError):
        raise ProtocolError(errno.EOPNOTSUPP, f"unknown command {msg['cmd']}") from None
    validate_attrs(msg)
    values = attrs_to_py(msg)
    for key in spec.required:
        if key not in values:
            raise ProtocolError(errno.EINVAL, f"missing attribute OVSLITE_ATTR_{key.upper()}")
    return Request(cmd, spec, hdr["flags"], values)


def encode_request(cmd: Cmd, values: dict | None, seq: int, dump: bool = False) -> bytes:
    msg = ovslitemsg()
    msg["cmd"] = int(cmd)
    msg["version"] = OVSLITE_PROTOCOL_VERSION
    msg["attrs"] = py_to_attrs(values or {})
    msg["header"]["type"] = OVSLITE_FAMILY
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_DUMP if dump else 0)
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


# -- replies ------------------------------------------------------------------


def encode_reply(cmd: int, values: dict, seq: int, pid: int = 0, multi: bool = False) -> bytes:
    msg = ovslitemsg()
    msg["cmd"] = int(cmd)
    msg["version"] = OVSLITE_PROTOCOL_VERSION
    msg["attrs"] = py_to_attrs(values)
    msg["header"].update(type=OVSLITE_FAMILY, flags=NLM_F_MULTI if multi else 0,
                         sequence_number=seq, pid=pid)
    try:
        msg.encode()
    except struct.error:  # a nest longer than an attribute's u16 length can say
        raise ProtocolError(errno.EMSGSIZE, f"reply larger than {MAX_MSG_SIZE} bytes") from None
    return bytes(msg.data)


def encode_error(request: bytes, err: int, message: str = "", offset: int | None = None) -> bytes:
    """NLMSG_ERROR for `request`: an ack if err == 0, else -err with a message."""
    hdr = header_of(request)
    msg = ovslite_errmsg()
    msg["error"] = -abs(err)
    for name in ("length", "type", "flags", "sequence_number", "pid"):
        msg["orig_" + name] = hdr[name]
    flags = NLM_F_CAPPED
    if err:
        flags |= NLM_F_ACK_TLVS
        msg["attrs"] = [("NLMSGERR_ATTR_MSG", message[:1024] or "error")]
        if offset is not None:
            msg["attrs"].append(("NLMSGERR_ATTR_OFFS", offset))
    msg["header"].update(type=NLMSG_ERROR, flags=flags,
                         sequence_number=hdr["sequence_number"], pid=hdr["pid"])
    msg.encode()
    return bytes(msg.data)


def encode_done(seq: int, pid: int = 0) -> bytes:
    msg = ovslite_donemsg()
    msg["error"] = 0
    msg["header"].update(type=NLMSG_DONE, flags=NLM_F_MULTI, sequence_number=seq, pid=pid)
    msg.encode()
    return bytes(msg.data)


@dataclass
class Reply:
    kind: str  # "ack", "error", "done" or "message"
    seq: int
    errno: int = 0
    message: str = ""
    flags: int = 0
    values: dict = field(default_factory=dict)


def decode_reply(data: bytes) -> Reply:
    """Decode one reply datagram (client side); ProtocolError(EPROTO) if garbled."""
    if len(data) < NLMSG_HDRLEN:
        raise ProtocolError(errno.EPROTO, f"short reply ({len(data)} bytes)")
    hdr = header_of(data)
    if not NLMSG_HDRLEN <= hdr["length"] <= len(data):
        raise ProtocolError(errno.EPROTO, "truncated reply")
    seq, mtype = hdr["sequence_number"], hdr["type"]
    try:
        if mtype == NLMSG_ERROR:
            msg = ovslite_errmsg(bytes(data))
            msg.decode()
            err = abs(msg["error"])
            if not err:
                return Reply("ack", seq, flags=hdr["flags"])
            text = msg.get_attr("MSG") if hdr["flags"] & NLM_F_ACK_TLVS else None
            return Reply("error", seq, err, text or "", hdr["flags"])
        if mtype == NLMSG_DONE:
            return Reply("done", seq, flags=hdr["flags"])
        if mtype == OVSLITE_FAMILY:
            msg = ovslitemsg(bytes(data))
            msg.decode()
            return Reply("message", seq, flags=hdr["flags"], values=attrs_to_py(msg))
    except Exception as exc:
        raise ProtocolError(errno.EPROTO, f"malformed reply: {exc}") from None
    raise ProtocolError(errno.EPROTO, f"unexpected reply type {mtype:#x}")
