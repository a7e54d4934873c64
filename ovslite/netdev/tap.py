"""`tap`: ovslite is the userspace end of a TAP device (/dev/net/tun).

Use `tap` when nothing else holds the TAP's file descriptor: ovslite opens
the named TAP (creating it if absent) and the kernel side is what the host or
a namespace sees. A TAP that qemu or another program already opened is a
`system` port instead: its kernel side is then an ordinary netdev. A TAP that
existed before (for instance `ip tuntap add mode tap`, persistent) is left in
place on del-port; one ovslite created disappears with it.
"""

from __future__ import annotations

from . import register
from .base import LinkStatus, Netdev
from .tundev import TapIO, open_tap, tap_exists


@register
class TapNetdev(TapIO, Netdev):
    type = "tap"

    def __init__(self, name: str, options: dict[str, str] | None = None):
        super().__init__(name, options)
        self.fd = None
        self.created = False

    def open(self) -> None:
        self.created = not tap_exists(self.name)
        self.fd = open_tap(self.name)

    def close(self) -> None:
        self.close_fd()

    def status(self) -> LinkStatus:
        return LinkStatus(False, "not open") if self.fd is None else self.link

    def kernel_device(self) -> str | None:
        return self.name

    def info(self) -> dict[str, str]:
        return {"created": "yes" if self.created else "no"}
