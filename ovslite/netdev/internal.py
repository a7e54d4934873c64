"""`internal`: a kernel interface the daemon creates, the host's L3 port on the bridge.

Backed by a TAP device (as in OVS): frames the host stack sends through the
interface are read from the TAP fd into the bridge, and frames the bridge
outputs are written to the fd and reach the host stack. Every bridge gets one
named after it, so `ip addr add 10.0.0.1/24 dev br0` works after `add-br br0`.

As a container NIC (seed 000's five steps in one): with `netns` (an `ip netns`
name) or `netns_pid`, the interface is moved into that namespace, renamed to
`ifname`, brought up, given `ip` (CIDR) and a default route via `gateway`.
Moving a TAP does not detach its fd, so forwarding carries on; closing the fd
removes the device from whichever namespace it is in. Its MAC is derived from
the machine id and the port name, so it is the same after a restart.
"""

from __future__ import annotations

import ipaddress
import os
import socket

from .. import rtnl
from ..names import check_ifname
from . import register
from .base import LinkStatus, Netdev, NetdevError
from .tundev import TapIO, open_tap, set_mac, set_persist, stable_mac


def _parse_options(opts: dict[str, str]) -> dict:
    """Validate internal-port options; raise NetdevError with a one-line reason."""
    out: dict = {}
    if "netns" in opts and "netns_pid" in opts:
        raise NetdevError("give either --netns or --netns-pid, not both")
    try:
        if "netns" in opts:
            out["netns"] = rtnl.netns_path(name=opts["netns"])
        elif "netns_pid" in opts:
            out["netns"] = rtnl.netns_path(pid=int(opts["netns_pid"]))
        if "ifname" in opts:
            if "netns" not in out:
                raise NetdevError("--ifname needs --netns or --netns-pid")
            out["ifname"] = check_ifname(opts["ifname"])
        if "ip" in opts:
            out["ip"] = ipaddress.ip_interface(opts["ip"])
            if "/" not in opts["ip"]:
                raise NetdevError(f"--ip {opts['ip']}: give a prefix length, e.g. {opts['ip']}/24")
        if "gateway" in opts:
            out["gateway"] = ipaddress.ip_address(opts["gateway"])
    except ValueError as exc:
        raise NetdevError(str(exc)) from None
    return out


@register
class InternalNetdev(TapIO, Netdev):
    type = "internal"
    creates_device = True
    options = frozenset({"netns", "netns_pid", "ifname", "ip", "gateway"})

    def __init__(self, name: str, options: dict[str, str] | None = None):
        super().__init__(name, options)
        self.fd = None
        self.settings = {}

    def open(self) -> None:
        self.settings = _parse_options(self.config)
        if "netns" in self.settings and not os.path.exists(self.settings["netns"]):
            raise NetdevError(f"network namespace {self.settings['netns']} does not exist")
        self.fd = open_tap(self.name)
        try:
            set_persist(self.fd, False)  # owned by the daemon: gone when the fd closes
            set_mac(self.fd, self.name, stable_mac(self.name))
            self._place()
        except Exception as exc:
            self.close()
            if isinstance(exc, NetdevError):
                raise
            raise NetdevError(f"cannot set up internal port {self.name}: {exc}") from None

    def _place(self) -> None:
        s = self.settings
        ns = s.get("netns")
        ifname = s.get("ifname", self.name)
        if ns:
            index = socket.if_nametoindex(self.name)
            rtnl.call(lambda ipr: ipr.link("set", index=index, net_ns_fd=ns, ifname=ifname))
        if not (ns or "ip" in s):
            return  # like OVS: left down for the host to configure

        def configure(ipr):
            (index,) = ipr.link_lookup(ifname=ifname)
            ipr.link("set", index=index, state="up")
            if "ip" in s:
                ip = s["ip"]
                ipr.addr("replace", index=index, address=str(ip.ip), prefixlen=ip.network.prefixlen)
            if "gateway" in s:
                gw = s["gateway"]
                dst = "0.0.0.0/0" if gw.version == 4 else "::/0"
                ipr.route("replace", dst=dst, gateway=str(gw))

        rtnl.call(configure, ns)

    def close(self) -> None:
        self.close_fd()

    def status(self) -> LinkStatus:
        return LinkStatus(False, "not open") if self.fd is None else self.link

    def kernel_device(self) -> str | None:
        # In a container's namespace its state is not watched: it was set up there.
        return None if "netns" in self.settings else self.name

    def info(self) -> dict[str, str]:
        info = {}
        for key in ("netns", "netns_pid", "ifname", "ip", "gateway"):
            if key in self.config:
                info[key] = self.config[key]
        return info
