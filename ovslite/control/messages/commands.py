"""Command numbers, what each command takes, limits, and the protocol's error."""

from __future__ import annotations

import enum
from dataclasses import dataclass

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
    GET_STP = 51
    ADD_MIRROR = 60
    DEL_MIRROR = 61
    GET_MIRROR = 62


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
    Cmd.FDB_ADD: CommandSpec(("bridge", "mac", "port"), ("vlan", "remote")),
    Cmd.FDB_DEL: CommandSpec(("bridge", "mac"), ("vlan",)),
    Cmd.FDB_FLUSH: CommandSpec(("bridge",), ("port",)),
    Cmd.FDB_STATS: CommandSpec(("bridge",)),
    Cmd.CAPTURE: CommandSpec(("port",), ("direction", "count", "outer"), dump=True, stream=True),
    Cmd.MONITOR: CommandSpec((), ("bridge", "groups"), dump=True, stream=True),
    Cmd.TRACE: CommandSpec(("bridge", "port", "dl_src", "dl_dst"), ("vlan", "dl_type", "generate"),
                           dump=True),
    Cmd.GET_FLOW: CommandSpec((), ("bridge",), dump=True),
    Cmd.GET_STP: CommandSpec((), ("bridge",), dump=True),
    Cmd.ADD_MIRROR: CommandSpec(("bridge", "mirror"), ("select_all", "select_src_port",
                                                      "select_dst_port", "select_vlan", "output",
                                                      "output_vlan")),
    Cmd.DEL_MIRROR: CommandSpec(("bridge", "mirror")),
    Cmd.GET_MIRROR: CommandSpec((), ("bridge",), dump=True),
}


class McGroup(enum.IntFlag):
    """MONITOR's "multicast groups" (OVSLITE_ATTR_GROUPS): which events a monitor gets."""

    CONFIG = 1  # bridge/port added or removed, port settings changed
    STATE = 2  # port up or down, with the reason
    FDB = 4  # MAC learned, moved, aged out, evicted


MCGRP_ALL = int(McGroup.CONFIG | McGroup.STATE | McGroup.FDB)  # plain int: ~ works


class ProtocolError(Exception):
    """A request (or reply) that cannot be accepted: errno + one-line message."""

    def __init__(self, err: int, message: str, offset: int | None = None):
        super().__init__(message)
        self.errno = err
        self.offset = offset  # byte offset of the offending attribute, if known
