"""Link state from rtnetlink events: carrier, admin state, devices removed and re-created.

One NETLINK_ROUTE socket subscribed to RTMGRP_LINK, read on the event loop
(no polling), decoded with pyroute2's rtnetlink marshal. Each RTM_NEWLINK /
RTM_DELLINK becomes a call of `on_link(name, index, flags, deleted)`; the switch
decides what it means for its ports. Only the daemon's own network namespace
is watched: an internal port moved into a container keeps the state it had.
If the kernel drops events (ENOBUFS: too many at once), every link is dumped
again so no change is missed.

With `on_routes`, the same socket also hears route and address changes (IPv4
and IPv6); a burst of them becomes one `on_routes()` call shortly after
(tunnel ports re-check their remotes: ovslite.netdev.tunnel).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import structlog
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

log = structlog.get_logger("ovslite.linkmon")

RTMGRP_LINK = 1
#: IPv4 and IPv6 addresses and routes
RTMGRP_ROUTING = 0x10 | 0x40 | 0x100 | 0x400
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_ROUTING = frozenset({20, 21, 24, 25})  # NEW/DELADDR, NEW/DELROUTE
#: how long a burst of route events may last before on_routes runs once
ROUTES_SETTLE = 0.1
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
    def __init__(self, loop, on_link: Callable[[str, int, int, bool], None],
                 on_routes: Callable[[], None] | None = None):
        self.loop = loop
        self.on_link = on_link
        self.on_routes = on_routes
        self._routes_pending = False
        self.marshal = MarshalRtnl()
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                  NETLINK_ROUTE)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)  # SO_RCVBUFFORCE
        except PermissionError:
            pass
        self.sock.bind((0, RTMGRP_LINK | (RTMGRP_ROUTING if on_routes else 0)))
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
                if self.on_routes is not None:
                    self._routes_changed()
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
                elif kind in RTM_ROUTING and self.on_routes is not None:
                    self._routes_changed()

    def _routes_changed(self) -> None:
        if not self._routes_pending:
            self._routes_pending = True
            self.loop.call_later(ROUTES_SETTLE, self._run_on_routes)

    def _run_on_routes(self) -> None:
        self._routes_pending = False
        self.on_routes()

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
