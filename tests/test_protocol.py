"""Control protocol: message round trips and every way the request parser refuses."""

from __future__ import annotations

import errno
import random
import struct

import pytest
from pyroute2.netlink import (
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
)
from pyroute2.netlink.marshal import Marshal

from ovslite.control import messages as m
from ovslite.control.messages import Cmd, ProtocolError
from ovslite.control.server import ControlServer
from ovslite.switch import SwitchError

NLMSGHDR = struct.Struct("=IHHII")  # tests craft broken datagrams by hand on purpose


def refused(data: bytes, err: int, text: str = "") -> ProtocolError:
    with pytest.raises(ProtocolError) as exc:
        m.parse_request(data)
    assert exc.value.errno == err, (errno.errorcode[exc.value.errno], str(exc.value))
    assert text in str(exc.value)
    return exc.value


def req(cmd=Cmd.ADD_BR, values=None, seq=7, dump=False) -> bytes:
    return m.encode_request(cmd, {"bridge": "br0"} if values is None else values, seq, dump)


class rogue(genlmsg):
    """A peer that speaks attributes (and nests) this daemon does not know."""

    nla_map = (
        (3, "OVSLITE_ATTR_BRIDGE", "asciiz"),
        (6, "OVSLITE_ATTR_OPTIONS", "opts"),
        (99, "OVSLITE_ATTR_FUTURE", "uint32"),
    )

    class opts(nla):
        nla_map = ((1, "ITEM", "item"), (7, "ODD", "uint32"))

        class item(nla):
            nla_map = ((1, "KEY", "asciiz"), (2, "VALUE", "asciiz"), (5, "EXTRA", "uint8"))


def rogue_msg(attrs, cmd=Cmd.ADD_BR) -> bytes:
    msg = rogue()
    msg["cmd"], msg["version"], msg["attrs"] = int(cmd), 1, attrs
    msg["header"].update(type=m.OVSLITE_FAMILY, flags=NLM_F_REQUEST | NLM_F_ACK, sequence_number=3)
    msg.encode()
    return bytes(msg.data)


# -- round trips -------------------------------------------------------------------

REQUESTS = [
    (Cmd.GET_VERSION, {}),
    (Cmd.ADD_BR, {"bridge": "br0"}),
    (Cmd.ADD_BR, {"bridge": "br0", "may_exist": True}),
    (Cmd.DEL_BR, {"bridge": "br0", "if_exists": True}),
    (Cmd.GET_BR, {}),
    (Cmd.GET_BR, {"bridge": "br0"}),
    (Cmd.ADD_PORT, {"bridge": "br0", "port": "p1", "type": "tap",
                    "options": {"peer": "x", "k": "a b=c", "empty": ""}, "may_exist": True}),
    (Cmd.DEL_PORT, {"port": "p1"}),
    (Cmd.DEL_PORT, {"bridge": "br0", "port": "p1", "if_exists": True}),
    (Cmd.GET_PORT, {"bridge": "br0"}),
    (Cmd.GET_FDB, {"bridge": "br0"}),
    (Cmd.GET_FDB, {"bridge": "br0", "vlan": 0}),
    (Cmd.SET_BR, {"bridge": "br0", "settings": {"mac-aging-time": "60", "mac-table-size": ""}}),
    (Cmd.ADD_PORT, {"bridge": "br0", "port": "p1", "settings": {"tag": "10", "trunks": "1,2-3"}}),
    (Cmd.SET_PORT, {"port": "p1", "settings": {"learning": "off"}}),
    (Cmd.SET_PORT, {"bridge": "br0", "port": "p1", "settings": {}}),
    (Cmd.FDB_ADD, {"bridge": "br0", "mac": "02:00:00:00:00:0a", "port": "p1", "vlan": 4094}),
    (Cmd.FDB_DEL, {"bridge": "br0", "mac": "02:00:00:00:00:0a"}),
    (Cmd.FDB_FLUSH, {"bridge": "br0", "port": "p1"}),
    (Cmd.FDB_STATS, {"bridge": "br0"}),
    (Cmd.MONITOR, {}),
    (Cmd.MONITOR, {"bridge": "br0", "groups": int(m.McGroup.FDB | m.McGroup.STATE)}),
    (Cmd.GET_FLOW, {}),
    (Cmd.GET_FLOW, {"bridge": "br0"}),
]


@pytest.mark.parametrize("cmd,values", REQUESTS, ids=[f"{c.name}-{i}" for i, (c, _) in enumerate(REQUESTS)])
def test_request_round_trip(cmd, values):
    dump = COMMANDS_DUMP = m.COMMANDS[cmd].dump
    data = m.encode_request(cmd, values, 42, dump=COMMANDS_DUMP)
    assert len(data) % 4 == 0
    hdr = m.header_of(data)
    assert hdr["length"] == len(data) and hdr["type"] == m.OVSLITE_FAMILY
    assert hdr["sequence_number"] == 42
    assert hdr["flags"] == NLM_F_REQUEST | NLM_F_ACK | (NLM_F_DUMP if dump else 0)
    r = m.parse_request(data)
    assert r.cmd == cmd and r.values == values


def test_false_flags_and_none_are_omitted():
    data = m.encode_request(Cmd.ADD_BR, {"bridge": "br0", "may_exist": False, "type": None}, 1)
    assert m.parse_request(data).values == {"bridge": "br0"}


REPLIES = [
    (Cmd.GET_VERSION, {"version": "0.1.0", "protocol": 1}),
    (Cmd.GET_BR, {"bridge": "br0", "ports": [
        {"port": "br0", "type": "internal", "port_no": 1, "up": 1, "options": {}},
        {"port": "p1", "type": "system", "port_no": 2, "up": 0, "reason": "no carrier",
         "options": {"a": "b"}}]}),
    (Cmd.GET_BR, {"bridge": "br1", "ports": []}),
    (Cmd.GET_PORT, {"bridge": "br0", "port": "p1", "type": "system", "port_no": 2, "up": 1,
                    "options": {}, "info": {"ifindex": "7"},
                    "stats": {"rx_packets": 1, "rx_bytes": 2**40, "rx_dropped": 3, "rx_errors": 4,
                              "tx_packets": 5, "tx_bytes": 6, "tx_dropped": 7, "tx_errors": 8,
                              "drops": {"runt": 3, "tx-failed": 7}}}),
    (Cmd.GET_FDB, {"port": "p1", "port_no": 2, "vlan": 0, "mac": "50:54:00:00:00:0a",
                   "age": 12, "static": True}),
    (Cmd.GET_PORT, {"bridge": "br0", "port": "p1", "settings": {"tag": "5", "admin": "down"}}),
    (Cmd.FDB_FLUSH, {"bridge": "br0", "count": 7}),
    (Cmd.FDB_STATS, {"bridge": "br0", "counters": {"entries": 2, "learned": 2**40},
                     "settings": {"mac-aging-time": "300", "mac-table-size": "8192"}}),
    (Cmd.MONITOR, {"event": "port-state", "time": 2**62, "bridge": "br0", "port": "p1", "up": 0,
                   "reason": "no carrier"}),
    (Cmd.MONITOR, {"event": "lost", "time": 1, "dropped": 12345}),
    (Cmd.GET_FLOW, {"counters": {"flows": 2, "hits": 2**40, "misses": 0}}),
    (Cmd.GET_FLOW, {"bridge": "br0", "port": "e0", "dl_src": "02:00:00:00:00:01",
                    "dl_dst": "02:00:00:00:00:02", "dl_type": 0x0800, "packets": 2**33,
                    "bytes": 2**40, "used_ms": 400, "output": "e4",
                    "hops": [{"port": "pa0", "peer": "pb0"}, {"port": "pa1", "peer": "pb1"}]}),
    (Cmd.GET_FLOW, {"bridge": "br1", "port": "e2", "dl_src": "02:00:00:00:00:03",
                    "dl_dst": "02:00:00:00:00:04", "vlan": 10, "packets": 0, "bytes": 0,
                    "used_ms": 0, "output": "e3", "hops": []}),
    (Cmd.MONITOR, {"event": "fdb", "bridge": "br0",
                   "fdb_events": m.pack_fdb_event(1, 5, 0, b"\x02" * 6, "p1", "")}),
]


@pytest.mark.parametrize("cmd,values", REPLIES, ids=[c.name for c, _ in REPLIES])
@pytest.mark.parametrize("multi", [False, True])
def test_reply_round_trip(cmd, values, multi):
    data = m.encode_reply(cmd, values, seq=9, pid=4, multi=multi)
    reply = m.decode_reply(data)
    assert (reply.kind, reply.seq) == ("message", 9)
    assert bool(reply.flags & NLM_F_MULTI) == multi
    assert reply.values == values


def test_fdb_event_records():
    blob = (m.pack_fdb_event(2, 10**18, 4094, bytes.fromhex("02000000000a"), "p" * 15, "old")
            + m.pack_fdb_event(4, 7, 0, bytes.fromhex("02000000000b"), "p2", ""))
    assert m.FDB_EVENT.size == 52 and len(blob) == 104
    assert m.unpack_fdb_events(blob) == [
        {"time": 10**18, "event": "mac-moved", "vlan": 4094, "mac": "02:00:00:00:00:0a",
         "port": "p" * 15, "old_port": "old"},
        {"time": 7, "event": "mac-evicted", "vlan": 0, "mac": "02:00:00:00:00:0b", "port": "p2"}]
    with pytest.raises(ProtocolError, match="not a whole number of 52-byte records") as exc:
        m.unpack_fdb_events(blob[:-1])
    assert exc.value.errno == errno.EPROTO


def test_ack_layout_is_the_kernels_capped_ack():
    request = req(seq=11)
    data = m.encode_error(request, 0)
    msg = m.ovslite_errmsg(data)
    msg.decode()
    assert msg["header"]["type"] == NLMSG_ERROR and msg["header"]["flags"] == NLM_F_CAPPED
    assert len(data) == 16 + 4 + 16  # header, errno, the request's header and nothing else
    assert msg["error"] == 0 and msg["orig_sequence_number"] == 11
    assert msg["orig_length"] == len(request) and msg["orig_type"] == m.OVSLITE_FAMILY
    assert m.decode_reply(data).kind == "ack"


def test_error_layout_carries_errno_request_header_and_message():
    request = req(seq=12)
    data = m.encode_error(request, errno.ENOENT, "no bridge named br0", offset=20)
    msg = m.ovslite_errmsg(data)
    msg.decode()
    assert msg["header"]["flags"] == NLM_F_CAPPED | NLM_F_ACK_TLVS
    assert msg["error"] == -errno.ENOENT
    assert msg.get_attr("NLMSGERR_ATTR_MSG") == "no bridge named br0"
    assert msg.get_attr("NLMSGERR_ATTR_OFFS") == 20
    reply = m.decode_reply(data)
    assert (reply.kind, reply.seq, reply.errno, reply.message) == ("error", 12, errno.ENOENT,
                                                                   "no bridge named br0")
    # pyroute2's own parser sees the error and finds the original header where the kernel puts it
    (parsed,) = Marshal().parse(data)
    assert parsed["header"]["error"].code == errno.ENOENT
    assert parsed["header"]["errmsg"]["header"]["sequence_number"] == 12


def test_done():
    data = m.encode_done(13, 2)
    hdr = m.header_of(data)
    assert hdr["type"] == NLMSG_DONE and hdr["flags"] == NLM_F_MULTI
    assert m.decode_reply(data).kind == "done"


def test_decode_reply_refuses_garbage():
    for bad in (b"", b"\x01" * 7, NLMSGHDR.pack(100, NLMSG_ERROR, 0, 1, 0),
                NLMSGHDR.pack(16, 0x7777, 0, 1, 0)):
        with pytest.raises(ProtocolError) as exc:
            m.decode_reply(bad)
        assert exc.value.errno == errno.EPROTO


# -- parser refusals -----------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 15])
def test_shorter_than_a_header(size):
    refused(req()[:size], errno.EINVAL, "truncated")


def test_length_field_beyond_datagram():
    data = req()
    refused(data[:-4], errno.EINVAL, f"header says {len(data)} bytes")


@pytest.mark.parametrize("length", [0, 4, 15])
def test_length_field_below_header(length):
    refused(NLMSGHDR.pack(length, m.OVSLITE_FAMILY, NLM_F_REQUEST, 1, 0), errno.EINVAL, "truncated")


def test_no_room_for_genl_header():
    refused(NLMSGHDR.pack(16, m.OVSLITE_FAMILY, NLM_F_REQUEST, 1, 0), errno.EINVAL, "generic netlink")


def test_trailing_bytes_after_message():
    refused(req() + req(), errno.EINVAL, "one message per datagram")


def test_oversized():
    refused(req() + bytes(m.MAX_MSG_SIZE), errno.EMSGSIZE, str(m.MAX_MSG_SIZE))


def test_message_of_exactly_the_maximum_size_is_accepted():
    options = {f"k{i}": "v" * 40 for i in range(900)}
    base = len(m.encode_request(Cmd.ADD_BR, {"bridge": "br0", "options": options}, 1))
    # one more pair: item header (4) + key "z" (8) + value attribute of exactly the rest
    options["z"] = "v" * (m.MAX_MSG_SIZE - base - 12 - 5)
    data = m.encode_request(Cmd.ADD_BR, {"bridge": "br0", "options": options}, 1)
    assert len(data) == m.MAX_MSG_SIZE
    assert m.parse_request(data).values["options"] == options
    refused(data + bytes(4), errno.EMSGSIZE)


@pytest.mark.parametrize("mtype", [0, NLMSG_ERROR, 0x10, 0x21, 0x7ABC])
def test_wrong_message_type(mtype):
    data = bytearray(req())
    struct.pack_into("=H", data, 4, mtype)
    refused(bytes(data), errno.EOPNOTSUPP, "unknown message type")


def test_not_a_request():
    data = bytearray(req())
    struct.pack_into("=H", data, 6, NLM_F_ACK)
    refused(bytes(data), errno.EINVAL, "NLM_F_REQUEST")


@pytest.mark.parametrize("cmd", [0, 2, 14, 24, 35, 43, 99, 255])
def test_unknown_or_reserved_command(cmd):
    data = bytearray(req())
    data[16] = cmd
    refused(bytes(data), errno.EOPNOTSUPP, f"unknown command {cmd}")


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unsupported_version(version):
    data = bytearray(req())
    data[17] = version
    refused(bytes(data), errno.EOPNOTSUPP, "protocol version")


def test_unknown_attribute_is_named():
    data = rogue_msg([("OVSLITE_ATTR_BRIDGE", "br0"), ("OVSLITE_ATTR_FUTURE", 1)])
    exc = refused(data, errno.EINVAL, "unknown attribute type 99")
    assert exc.offset == 20 + 8  # after the genl header and the 8-byte BRIDGE attribute


def test_unknown_attribute_inside_a_nest():
    opts = {"attrs": [("ITEM", {"attrs": [("KEY", "a"), ("VALUE", "b")]}), ("ODD", 1)]}
    data = rogue_msg([("OVSLITE_ATTR_BRIDGE", "br0"), ("OVSLITE_ATTR_OPTIONS", opts)])
    refused(data, errno.EINVAL, "unknown attribute type 7 in OVSLITE_ATTR_OPTIONS")
    opts = {"attrs": [("ITEM", {"attrs": [("KEY", "a"), ("EXTRA", 1)]})]}
    data = rogue_msg([("OVSLITE_ATTR_BRIDGE", "br0"), ("OVSLITE_ATTR_OPTIONS", opts)])
    refused(data, errno.EINVAL, "unknown attribute type 5 in OVSLITE_KVLIST_ATTR_ITEM")


def test_attribute_type_zero():
    data = bytearray(req())
    struct.pack_into("=H", data, 22, 0)  # type of the first attribute
    refused(bytes(data), errno.EINVAL, "unknown attribute type 0")


@pytest.mark.parametrize("cmd,values,missing", [
    (Cmd.ADD_BR, {}, "OVSLITE_ATTR_BRIDGE"),
    (Cmd.DEL_BR, {"port": "p1"}, "OVSLITE_ATTR_BRIDGE"),
    (Cmd.ADD_PORT, {"bridge": "br0"}, "OVSLITE_ATTR_PORT"),
    (Cmd.ADD_PORT, {"port": "p1"}, "OVSLITE_ATTR_BRIDGE"),
    (Cmd.DEL_PORT, {"bridge": "br0"}, "OVSLITE_ATTR_PORT"),
    (Cmd.GET_FDB, {}, "OVSLITE_ATTR_BRIDGE"),
    (Cmd.SET_BR, {"bridge": "br0"}, "OVSLITE_ATTR_SETTINGS"),
    (Cmd.SET_PORT, {"settings": {"tag": "1"}}, "OVSLITE_ATTR_PORT"),
    (Cmd.FDB_ADD, {"bridge": "br0", "port": "p1"}, "OVSLITE_ATTR_MAC"),
    (Cmd.FDB_DEL, {"mac": "02:00:00:00:00:01"}, "OVSLITE_ATTR_BRIDGE"),
    (Cmd.FDB_STATS, {}, "OVSLITE_ATTR_BRIDGE"),
])
def test_missing_attribute(cmd, values, missing):
    refused(m.encode_request(cmd, values, 1), errno.EINVAL, f"missing attribute {missing}")


def test_attribute_overrunning_the_message():
    data = bytearray(req())
    struct.pack_into("=H", data, 20, 200)  # BRIDGE's length
    refused(bytes(data), errno.EINVAL, "truncated attribute OVSLITE_ATTR_BRIDGE")


def test_attribute_length_below_its_header():
    data = bytearray(req())
    struct.pack_into("=H", data, 20, 2)
    refused(bytes(data), errno.EINVAL, "truncated attribute")


def test_nest_overrunning_its_parent():
    data = bytearray(m.encode_request(Cmd.ADD_BR, {"bridge": "b", "options": {"k": "v"}}, 1))
    # the first attribute inside OPTIONS (an ITEM nest) claims more than OPTIONS holds
    opts = 20 + 8
    struct.pack_into("=H", data, opts + 4, 60)
    refused(bytes(data), errno.EINVAL, "truncated attribute OVSLITE_KVLIST_ATTR_ITEM")


def test_wrong_size_integer():
    msg = bytearray(m.encode_request(Cmd.GET_BR, {}, 1))
    # append a PORT_NO (u32) attribute with a 2-byte payload, and fix the lengths
    msg += struct.pack("=HHH2x", 6, 9, 5)
    struct.pack_into("=I", msg, 0, len(msg))
    refused(bytes(msg), errno.EINVAL, "OVSLITE_ATTR_PORT_NO has 2 bytes, expected 4")


def test_flag_with_payload():
    msg = bytearray(m.encode_request(Cmd.ADD_BR, {"bridge": "b"}, 1))
    msg += struct.pack("=HHI", 8, 7, 1)
    struct.pack_into("=I", msg, 0, len(msg))
    refused(bytes(msg), errno.EINVAL, "OVSLITE_ATTR_MAY_EXIST has 4 bytes, expected 0")


@pytest.mark.parametrize("payload,text", [
    (b"br0x", "NUL-terminated"),
    (b"b\0r\0", "NUL-terminated"),
    (b"", "NUL-terminated"),
    (b"\xff\xfe\0\0", "NUL-terminated"),
    (b"\xff\xfe\0", "UTF-8"),
])
def test_bad_strings(payload, text):
    msg = bytearray(NLMSGHDR.pack(0, m.OVSLITE_FAMILY, NLM_F_REQUEST, 1, 0) + bytes([Cmd.ADD_BR, 1, 0, 0]))
    msg += struct.pack("=HH", 4 + len(payload), 3) + payload + bytes(-len(payload) % 4)
    struct.pack_into("=I", msg, 0, len(msg))
    refused(bytes(msg), errno.EINVAL, text)


def test_nesting_too_deep():
    ports: list = []
    for _ in range(m.MAX_DEPTH + 2):
        ports = [{"port": "p", "ports": ports}]
    data = m.encode_request(Cmd.GET_BR, {"ports": ports}, 1)
    refused(data, errno.EINVAL, "nested deeper")


# -- the server's dispatch: always exactly one well-formed reply ---------------------------


class StubSwitch:
    """Enough of a Switch for dispatch: refuses every lookup, accepts every change."""

    def __init__(self):
        self.bridges: dict = {}
        self.calls: list = []

    def add_bridge(self, name, may_exist=False):
        self.calls.append(("add_bridge", name, may_exist))

    def del_bridge(self, name, if_exists=False):
        raise SwitchError(errno.ENOENT, f"no bridge named {name}")

    def bridge(self, name):
        raise SwitchError(errno.ENOENT, f"no bridge named {name}")

    def add_port(self, *args, **kwargs):
        raise RuntimeError("boom")


@pytest.fixture
def server():
    return ControlServer(StubSwitch(), "/nonexistent/ctl.sock", loop=None)


def dispatch(server, data: bytes) -> list[bytes]:
    return list(server.dispatch(data))


def one_error(replies: list[bytes], err: int) -> m.Reply:
    assert len(replies) == 1
    reply = m.decode_reply(replies[0])
    assert reply.kind == "error" and reply.errno == err, reply
    assert reply.message and "\n" not in reply.message
    return reply


def test_dispatch_ack_and_switch_errors(server):
    (ack,) = dispatch(server, req(Cmd.ADD_BR, {"bridge": "br0", "may_exist": True}, seq=5))
    assert m.decode_reply(ack).kind == "ack" and m.decode_reply(ack).seq == 5
    assert server.switch.calls == [("add_bridge", "br0", True)]
    reply = one_error(dispatch(server, req(Cmd.DEL_BR, seq=6)), errno.ENOENT)
    assert reply.message == "no bridge named br0" and reply.seq == 6


def test_dispatch_handler_crash_is_eio(server):
    reply = one_error(dispatch(server, req(Cmd.ADD_PORT, {"bridge": "b", "port": "p"})), errno.EIO)
    assert "boom" in reply.message


def test_dispatch_stream_needs_a_connection(server):
    reply = one_error(dispatch(server, req(Cmd.MONITOR, {})), errno.EOPNOTSUPP)
    assert reply.message == "MONITOR needs a connection"


def test_dispatch_dump(server):
    replies = [m.decode_reply(d) for d in dispatch(server, req(Cmd.GET_BR, {}, seq=8, dump=True))]
    assert [r.kind for r in replies] == ["done"] and replies[0].seq == 8
    v = [m.decode_reply(d) for d in dispatch(server, req(Cmd.GET_VERSION, {}, seq=9))]
    assert [r.kind for r in v] == ["message", "ack"]
    assert v[0].values["protocol"] == m.OVSLITE_PROTOCOL_VERSION


@pytest.mark.parametrize("data,err", [
    (b"", errno.EINVAL),
    (b"\x00" * 100 * 1024, errno.EMSGSIZE),
    (NLMSGHDR.pack(4096, 0x10, NLM_F_REQUEST, 1, 0) + bytes(8), errno.EINVAL),
    (NLMSGHDR.pack(16, 0x7ABC, NLM_F_REQUEST, 1, 0), errno.EOPNOTSUPP),
    (NLMSGHDR.pack(40, 0x20, NLM_F_REQUEST, 1, 0) + b"\xff" * 24, errno.EOPNOTSUPP),
])
def test_dispatch_garbage(server, data, err):
    one_error(dispatch(server, data), err)


def test_dispatch_survives_fuzzing(server):
    """Random corruption of valid requests: never an exception, always one reply."""
    rng = random.Random(1234)
    seeds = [req(c, v) for c, v in REQUESTS if c not in (Cmd.ADD_PORT,)]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(data))
            if rng.random() < 0.8 and pos >= 16:  # keep most headers intact to reach the attrs
                data[pos] = rng.randrange(256)
            elif rng.random() < 0.5:
                del data[pos:]
                if not data:
                    break
        replies = dispatch(server, bytes(data))
        assert replies, bytes(data).hex()
        kinds = [m.decode_reply(r).kind for r in replies]
        assert kinds[-1] in ("ack", "error", "done"), kinds
