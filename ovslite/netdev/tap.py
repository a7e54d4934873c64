"""`tap`: ovslite is the userspace end of a TAP device (/dev/net/tun).

Use `tap` when nothing else holds the TAP's file descriptor: ovslite opens
the named TAP (creating it if absent) and the kernel side is what the host or
a namespace sees. A TAP that qemu or another program already opened is a
`system` port instead: its kernel side is then an ordinary netdev. A TAP that
existed before (for instance `ip tuntap add mode tap`, persistent) is left in
place on del-port; one ovslite created disappears with it.

Across a restart the fd is handed over (ovslite.handover), so a TAP ovslite
created outlives the restart, and a TAP moved into another namespace is found
again wherever it is: open(inherited) re-attaches to it by fd. What is sent
into a TAP ovslite created waits in its queue meanwhile, made long for the
restart (tundev.RestartQueue; the TAP is made with the noqueue qdisc, which
a move to another namespace replaces by the default, so that each of the two
length changes then drops a few frames). A TAP that existed before keeps its
owner's settings: its txqueuelen (often 500 or 1000) is what it holds across
a restart, about 50-100 ms at 10,000 frames/s.
"""

from __future__ import annotations

import os
import socket

import structlog

from .. import rtnl
from . import register
from .base import LinkStatus, Netdev, NetdevError
from .tundev import (
    DEFAULT_TXQLEN,
    IFF_PERSIST,
    RestartQueue,
    TapIO,
    check_tap,
    no_qdisc,
    open_tap,
    tap_exists,
    tap_info,
    txqlen,
)

log = structlog.get_logger("ovslite.netdev")


@register
class TapNetdev(RestartQueue, TapIO, Netdev):
    type = "tap"
    fds_hold_device = True

    def __init__(self, name: str, options: dict[str, str] | None = None):
        super().__init__(name, options)
        self.fd = None
        self.created = False

    def open(self, inherited: list[int] | None = None) -> None:
        for fd in inherited or ():
            why = check_tap(fd, self.name) if self.fd is None else "a second fd"
            if why is None:
                self.fd = fd
                # ovslite made it unless it is persistent (ip tuntap add)
                self.created = not tap_info(fd)[1] & IFF_PERSIST
                self.resume_queue()
                log.info("port re-attached", port=self.name)
            else:
                log.warning("handed-over fd is not this TAP: closed", port=self.name, reason=why)
                os.close(fd)
        if self.fd is not None:
            return
        self.created = not tap_exists(self.name)
        self.fd = open_tap(self.name)
        if self.created:  # still down: nothing is queued yet
            try:
                txqlen(self.name, DEFAULT_TXQLEN)
                index = socket.if_nametoindex(self.name)
                rtnl.call(lambda ipr: no_qdisc(ipr, index))
            except Exception as exc:
                self.close()
                raise NetdevError(f"cannot set up TAP {self.name}: {exc}") from None

    def owns_queue(self) -> bool:
        return self.created

    def handover_fds(self) -> list[int]:
        return [self.fd] if self.fd is not None else []

    def close(self) -> None:
        self.stop_draining()
        self.close_fd()

    def status(self) -> LinkStatus:
        return LinkStatus(False, "not open") if self.fd is None else self.link

    def kernel_device(self) -> str | None:
        return self.name

    def info(self) -> dict[str, str]:
        return {"created": "yes" if self.created else "no"}
