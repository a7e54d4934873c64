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

Across a restart the TAP fd is handed over (ovslite.handover): the device,
its addresses, routes and namespace never go away, and open(inherited)
re-attaches to it without touching any of that. A handed-over TAP that does
not match the configuration (changed while the daemon was down) is deleted
and the port is made anew. What the host or the container sends meanwhile
queues in the TAP, made long for a planned restart (tundev.RestartQueue).
The port is made with the noqueue qdisc, set where the device ends up (a move
to another namespace resets it), so that changing the queue's length loses
nothing; a qdisc a user puts there instead costs a few frames per restart.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket

import structlog

from .. import rtnl
from ..names import check_ifname, check_netns
from ..portconfig import shown
from . import register
from .base import LinkStatus, Netdev, NetdevError
from .tundev import (
    DEFAULT_TXQLEN,
    RestartQueue,
    TapIO,
    check_tap,
    no_qdisc,
    open_tap,
    set_mac,
    set_persist,
    stable_mac,
    tap_info,
    tap_netns_fd,
    txqlen,
)

log = structlog.get_logger("ovslite.netdev")

SIOCGIFHWADDR = 0x8927  # on a TAP fd: its own device's address (no name needed)
IFREQ_LEN = 40
IFR_HWADDR = slice(18, 24)  # struct ifreq: name[16], sa_family, sa_data


def _parse_options(opts: dict[str, str]) -> dict:
    """Internal-port options (strings) -> typed; ValueError with a one-line reason.
    Pure: whether the namespace exists is found out by open()."""
    out: dict = {}
    if "netns" in opts and "netns_pid" in opts:
        raise ValueError("give either --netns or --netns-pid, not both")
    if "netns" in opts:
        out["netns"] = rtnl.netns_path(name=check_netns(opts["netns"]))
    elif "netns_pid" in opts:
        pid = opts["netns_pid"]
        if not (pid.isascii() and pid.isdecimal()) or not 0 < int(pid) < 2**22:
            raise ValueError(f"netns_pid: {shown(pid)} is not a process id")
        out["netns"] = rtnl.netns_path(pid=int(pid))
    if "ifname" in opts:
        if "netns" not in out:
            raise ValueError("--ifname needs --netns or --netns-pid")
        out["ifname"] = check_ifname(opts["ifname"])
    if "ip" in opts:
        if "/" not in opts["ip"]:
            raise ValueError(f"--ip {shown(opts['ip'])}: give a prefix length, e.g. 10.0.0.2/24")
        out["ip"] = ipaddress.ip_interface(opts["ip"])
    if "gateway" in opts:
        out["gateway"] = ipaddress.ip_address(opts["gateway"])
    return out


@register
class InternalNetdev(RestartQueue, TapIO, Netdev):
    type = "internal"
    creates_device = True
    fds_hold_device = True
    options = frozenset({"netns", "netns_pid", "ifname", "ip", "gateway"})

    def __init__(self, name: str, options: dict[str, str] | None = None):
        super().__init__(name, options)
        self.fd = None
        self.settings = {}

    @classmethod
    def check_options(cls, name: str, options: dict) -> None:
        super().check_options(name, options)
        _parse_options(options)

    def open(self, inherited: list[int] | None = None) -> None:
        try:
            self.settings = _parse_options(self.config)
        except ValueError as exc:
            for fd in inherited or ():
                _delete_tap(fd)
            raise NetdevError(str(exc)) from None
        if inherited and self._reattach(inherited):
            return
        if "netns" in self.settings and not os.path.exists(self.settings["netns"]):
            raise NetdevError(f"network namespace {self.settings['netns']} does not exist")
        self.fd = open_tap(self.name)
        try:
            set_persist(self.fd, False)  # owned by the daemon: gone when the fd closes
            set_mac(self.fd, self.name, stable_mac(self.name))
            txqlen(self.name, DEFAULT_TXQLEN)
            self._place()
        except Exception as exc:
            self.close()
            if isinstance(exc, NetdevError):
                raise
            raise NetdevError(f"cannot set up internal port {self.name}: {exc}") from None

    def _reattach(self, fds: list[int]) -> bool:
        """Take the handed-over TAP if it is this port's, as configured."""
        ns = self.settings.get("netns")
        ifname = self.settings.get("ifname", self.name) if ns else self.name
        for fd in fds:
            if self.fd is not None:  # one TAP per port: a second fd is a stray copy
                os.close(fd)
                continue
            why = check_tap(fd, ifname, ns or "/proc/self/ns/net")
            if why is None:
                self.fd = fd
                continue
            log.warning("handed-over TAP does not match the configuration: deleting it",
                        port=self.name, reason=why)
            _delete_tap(fd)
        if self.fd is not None:
            self.resume_queue()
            log.info("port re-attached", port=self.name, device=ifname, netns=ns or "")
        return self.fd is not None

    def handover_fds(self) -> list[int]:
        return [self.fd] if self.fd is not None else []

    def _place(self) -> None:
        s = self.settings
        ns = s.get("netns")
        ifname = s.get("ifname", self.name)
        if ns:  # moving it resets its qdisc: set below, where it ends up
            index = socket.if_nametoindex(self.name)
            rtnl.call(lambda ipr: ipr.link("set", index=index, net_ns_fd=ns, ifname=ifname))

        if not (ns or "ip" in s):
            # like OVS: left down for the host to configure
            rtnl.call(lambda ipr: no_qdisc(ipr, socket.if_nametoindex(self.name)))
            return

        def configure(ipr):
            (index,) = ipr.link_lookup(ifname=ifname)
            no_qdisc(ipr, index)
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
        self.stop_draining()
        self.close_fd()

    def status(self) -> LinkStatus:
        return LinkStatus(False, "not open") if self.fd is None else self.link

    def kernel_device(self) -> str | None:
        # In a container's namespace its state is not watched: it was set up there.
        return None if "netns" in self.settings else self.name

    def local_mac(self) -> bytes | None:
        # The host's port on the bridge: its address is the bridge's own. A container
        # NIC is a host behind the bridge, and a MAC changed in there could not be followed.
        if self.fd is None or self.kernel_device() is None:
            return None
        try:
            ifr = fcntl.ioctl(self.fd, SIOCGIFHWADDR, bytes(IFREQ_LEN))
        except OSError:
            return None
        return ifr[IFR_HWADDR]

    def info(self) -> dict[str, str]:
        info: dict[str, str] = {}
        for key in ("netns", "netns_pid", "ifname", "ip", "gateway"):
            if key in self.config:
                info[key] = self.config[key]
        return info


def _delete_tap(fd: int) -> None:
    """Remove the TAP device `fd` is attached to, in its namespace, and close `fd`.

    Closing alone is not enough: the fd store (or another process) may hold a
    copy, and a namesake made now would find the old device busy.
    """
    try:
        name, _flags = tap_info(fd)
        nsfd = tap_netns_fd(fd)
    except OSError:
        os.close(fd)
        return
    try:
        def delete(ipr):
            found = ipr.link_lookup(ifname=name)
            if found:
                ipr.link("del", index=found[0])

        rtnl.call(delete, f"/proc/self/fd/{nsfd}" if nsfd is not None else None)
    except Exception as exc:
        log.warning("cannot delete handed-over TAP", device=name, error=str(exc))
    finally:
        if nsfd is not None:
            os.close(nsfd)
        os.close(fd)

