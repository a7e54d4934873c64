"""Link state from rtnetlink events: carrier, admin state, devices removed and re-created.

One NETLINK_ROUTE socket subscribed to RTMGRP_LINK, read on the event loop
(no polling), decoded with pyroute2's rtnetlink marshal. Each RTM_NEWLINK /
RTM_DELLINK becomes a call of `on_link(name, index, flags, deleted)`; the switch
decides what it means for its ports. Only the daemon's own network namespace
is watched: an internal port moved into a container keeps the state it had.
If the kernel drops events (ENOBUFS: too many at once), every link is dumped
again so no change is missed.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import structlog
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

log = structlog.get_logger("ovslite.linkmon")

RTMGRP_LINK = 1
RTM_NEWLINK = 16
RTM_DELLINK = 17
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
NETLINK_ROUTE = 0
RCVBUF = 4 * 1024 * 1024


def link_state(flags: int) -> tuple[bool, str]:
    """(link usable, reason if not) from a device's flags."""
    if not flags & IFF_UP:
        return False, "interface is down"
    if not flags & IFF_LOWER_UP:
        return False, "no carrier"
    return True, ""


class LinkMonitor:
    def __init__(self, loop, on_link: Callable[[str, int, int, bool], None]):
        self.loop = loop
        self.on_link = on_link
        self.marshal = MarshalRtnl()
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                  NETLINK_ROUTE)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)  # SO_RCVBUFFORCE
        except PermissionError:
            pass
        self.sock.bind((0, RTMGRP_LINK))
        loop.add_reader(self.sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        for _ in range(64):  # bounded: a flood of events cannot starve forwarding
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:  # ENOBUFS: events were lost; resynchronise
                log.warning("link events lost, re-reading all links", error=exc.strerror)
                self.resync()
                continue
            try:
                messages = self.marshal.parse(data)
            except Exception as exc:  # a decoder surprise must not stop the monitor
                log.error("undecodable link event", error=repr(exc))
                continue
            for msg in messages:
                kind = msg["header"]["type"]
                if kind in (RTM_NEWLINK, RTM_DELLINK):
                    name = msg.get_attr("IFLA_IFNAME")
                    if name:
                        self.on_link(name, msg["index"], msg["flags"], kind == RTM_DELLINK)

    def resync(self) -> None:
        from . import rtnl

        links = rtnl.call(lambda ipr: [(m.get_attr("IFLA_IFNAME"), m["index"], m["flags"])
                                       for m in ipr.get_links()])
        for name, index, flags in links:
            self.on_link(name, index, flags, False)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


def query(name: str) -> int | None:
    """The current flags of device `name`, or None if it does not exist."""
    from . import rtnl

    def get(ipr):
        found = ipr.link_lookup(ifname=name)
        return ipr.get_links(found[0])[0]["flags"] if found else None

    try:
        return rtnl.call(get)
    except Exception:
        return None
