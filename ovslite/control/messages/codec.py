"""Whole datagrams: parse and encode requests, encode and decode replies."""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLM_F_DUMP,
    NLM_F_MULTI,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    nlmsg,
)

from .attrs import (
    attrs_to_py,
    ovslite_donemsg,
    ovslite_errmsg,
    ovslitemsg,
    py_to_attrs,
    validate_attrs,
)
from .commands import (
    COMMANDS,
    GENL_HDRLEN,
    MAX_MSG_SIZE,
    NLMSG_HDRLEN,
    OVSLITE_FAMILY,
    OVSLITE_PROTOCOL_VERSION,
    Cmd,
    CommandSpec,
    ProtocolError,
)

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
