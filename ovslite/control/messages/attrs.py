"""The attribute declarations (pyroute2 nla classes), Python values <-> attributes,
and validation of received attributes before pyroute2 decodes them."""

from __future__ import annotations

import errno
import struct

from pyroute2.netlink import NLA_F_NESTED, NLA_F_NET_BYTEORDER, genlmsg, nla, nlmsg

from ... import pyroute2_lazy
from .commands import MAX_DEPTH, ProtocolError

# Decoding a request must leave nothing behind: pyroute2 memoises every distinct
# attribute header in a module-level dict, unbounded (issue #12).
pyroute2_lazy.bound_caches()

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
    ("OVSLITE_ATTR_MIRROR", "asciiz"),      # 47 mirror: its name (also OUTPUT: its output port,
    #                                            PACKETS, BYTES, DROPPED: copies, REASON: disabled)
    ("OVSLITE_ATTR_SELECT_ALL", "flag"),    # 48 mirror: every port's frames, in and out
    ("OVSLITE_ATTR_SELECT_SRC_PORT", "portlist|nested"),  # 49 mirror: frames received there (PORT each)
    ("OVSLITE_ATTR_SELECT_DST_PORT", "portlist|nested"),  # 50 mirror: frames sent there (PORT each)
    ("OVSLITE_ATTR_SELECT_VLAN", "asciiz"),  # 51 mirror: only in these VLANs ("10,20-30")
    ("OVSLITE_ATTR_OUTPUT_VLAN", "uint16"),  # 52 mirror: flood copies in this VLAN
    ("OVSLITE_ATTR_REMOTE", "asciiz"),      # 53 a tunnel remote's address (fdb, dump-ports)
    ("OVSLITE_ATTR_REMOTES", "portlist|nested"),  # 54 GET_PORT: per remote, REMOTE and STATS
    ("OVSLITE_ATTR_FDB_REMOTES", "cdata"),  # 55 fdb: FDB_REMOTE records beside FDB_ENTRIES
    ("OVSLITE_ATTR_OUTER", "flag"),         # 56 capture: a tunnel's encapsulated packets
    ("OVSLITE_ATTR_BLOCKED", "asciiz"),     # 57 port: why spanning tree keeps it from forwarding
    ("OVSLITE_ATTR_OLD", "asciiz"),         # 58 monitor: stp role/state before
    ("OVSLITE_ATTR_NEW", "asciiz"),         # 59 monitor: stp role/state after (topology change: count)
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


