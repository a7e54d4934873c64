"""`system`: an existing kernel netdev, reached through an AF_PACKET socket.

The socket is bound to the device's ifindex with PACKET_VNET_HDR, so GSO
super-frames and CHECKSUM_PARTIAL frames arrive whole with their offload
metadata and are sent on the same way (see ovslite.vnet); frames move through
mapped rings (pktring.py). PACKET_IGNORE_OUTGOING
keeps the socket from reading back what it (or the host) transmits, as OVS's
BPF filter does; PACKET_QDISC_BYPASS skips the qdisc layer on transmit.

Limits: one rx and one tx queue; a frame longer than MAX_PACKET_LEN (BIG TCP)
would be truncated.
"""

from __future__ import annotations

import errno
import socket
import struct

from .. import rtnl
from . import register
from .base import LinkStatus, Netdev, NetdevError
from .pktring import RingIO, setup_rings

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_VNET_HDR = 15
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
ETH_P_ALL = 0x0003
SO_SNDBUFFORCE = 32  # not exported by the socket module
SO_RCVBUFFORCE = 33
SOCKET_BUFFER = 4 * 1024 * 1024

_PACKET_MREQ = struct.Struct("iHH8s")


def ifindex_of(name: str) -> int:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise NetdevError(f"interface {name!r} does not exist", errno.ENODEV) from None


def set_link_up(ifindex: int) -> None:
    rtnl.call(lambda ipr: ipr.link("set", index=ifindex, state="up"))


def _packet_socket(name: str, protocol: int) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(protocol))
    sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
    for opt in (SO_RCVBUFFORCE, SO_SNDBUFFORCE):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        except PermissionError:  # without CAP_NET_ADMIN the default size will do
            pass
    sock.setblocking(False)
    return sock


def open_packet_sockets(ifindex: int, name: str):
    """(socket with mapped rings, plain send-only socket) on `ifindex`.

    Both carry vnet headers; the first is promiscuous and ignores our own sends.
    The second is bound with protocol 0, so it receives nothing.
    """
    socks = []
    try:
        sock = _packet_socket(name, ETH_P_ALL)
        socks.append(sock)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        ring = setup_rings(sock)
        sock.bind((name, ETH_P_ALL))
        mreq = _PACKET_MREQ.pack(ifindex, PACKET_MR_PROMISC, 0, b"")
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        tx_sock = _packet_socket(name, 0)
        socks.append(tx_sock)
        tx_sock.bind((name, 0))
    except OSError as exc:
        for s in socks:
            s.close()
        raise NetdevError(f"cannot open AF_PACKET socket on {name}: {exc.strerror}", exc.errno) from None
    return sock, ring, tx_sock


@register
class SystemNetdev(RingIO, Netdev):
    """An existing kernel interface (physical NIC, veth end, a VM's tap)."""

    type = "system"

    def __init__(self, name: str, options: dict[str, str] | None = None):
        super().__init__(name, options)
        self.ifindex = 0
        self.sock = None

    def open(self) -> None:
        self.ifindex = ifindex_of(self.name)
        try:
            set_link_up(self.ifindex)
        except Exception as exc:  # pyroute2 raises NetlinkError and others
            raise NetdevError(f"cannot bring {self.name} up: {exc}") from None
        self.sock, self.ring, self.tx_sock = open_packet_sockets(self.ifindex, self.name)
        self._reset_rings()

    def close(self) -> None:
        self.close_rings()
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def status(self) -> LinkStatus:
        return LinkStatus(False, "not open") if self.sock is None else self.link

    def kernel_device(self) -> str | None:
        return self.name

    def set_mtu(self, mtu: int | None) -> None:
        if mtu is None:
            return
        try:
            rtnl.call(lambda ipr: ipr.link("set", index=self.ifindex, mtu=mtu))
        except Exception as exc:
            raise NetdevError(f"cannot set the MTU of {self.name} to {mtu}: {exc}") from None

    def info(self) -> dict[str, str]:
        return {"ifindex": str(self.ifindex)}
