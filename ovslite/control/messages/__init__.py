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

Modules: `commands` (numbers, what each command takes, ProtocolError),
`attrs` (the attribute declarations and their validation), `fdbwire` (packed
MAC records), `codec` (whole requests and replies). Everything is re-exported
here, so callers import from `ovslite.control.messages`.

Limits: MAX_MSG_SIZE bytes per datagram either way; attributes nest at most
MAX_DEPTH deep; strings are NUL-terminated UTF-8.
"""

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_MULTI, NLM_F_REQUEST  # noqa: F401

from .attrs import (  # noqa: F401
    ATTRS,
    STAT_NAMES,
    attrs_to_py,
    counters,
    kvlist,
    ovslite_donemsg,
    ovslite_errmsg,
    ovslite_object,
    ovslitemsg,
    portlist,
    py_to_attrs,
    stats,
    validate_attrs,
)
from .codec import (  # noqa: F401
    Reply,
    Request,
    decode_reply,
    encode_done,
    encode_error,
    encode_reply,
    encode_request,
    header_of,
    parse_request,
)
from .commands import (  # noqa: F401
    COMMANDS,
    GENL_HDRLEN,
    MAX_DEPTH,
    MAX_MSG_SIZE,
    MCGRP_ALL,
    NLMSG_HDRLEN,
    OVSLITE_FAMILY,
    OVSLITE_PROTOCOL_VERSION,
    Cmd,
    CommandSpec,
    McGroup,
    ProtocolError,
)
from .fdbwire import (  # noqa: F401
    FDB_ENTRY,
    FDB_ENTRY_BATCH,
    FDB_ENTRY_STATIC,
    FDB_EVENT,
    FDB_EVENT_KINDS,
    FDB_REMOTE,
    pack_fdb_event,
    pack_fdb_remote,
    unpack_fdb_entries,
    unpack_fdb_events,
)
