"""`system`: an existing kernel netdev, reached through an AF_PACKET socket.

The socket is bound to the device's ifindex with PACKET_VNET_HDR, so GSO
super-frames and CHECKSUM_PARTIAL frames arrive whole with their offload
metadata and are sent on the same way (see ovslite.vnet). PACKET_IGNORE_OUTGOING
keeps the socket from reading back what it (or the host) transmits, as OVS's
BPF filter does; PACKET_QDISC_BYPASS skips the qdisc layer on transmit.

Limits: one rx and one tx queue; a frame longer than MAX_PACKET_LEN (BIG TCP)
would be truncated and is counted as an rx error.
"""

from __future__ import annotations

import errno
import socket
import struct

from .. import rtnl, vnet
from . import register
from .base import LinkStatus, Netdev, NetdevError

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


def open_packet_socket(ifindex: int, name: str) -> socket.socket:
    """An AF_PACKET socket on `ifindex`, vnet headers on, promiscuous, non-blocking."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        for opt in (SO_RCVBUFFORCE, SO_SNDBUFFORCE):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            except PermissionError:  # without CAP_NET_ADMIN the default size will do
                pass
        sock.bind((name, ETH_P_ALL))
        mreq = _PACKET_MREQ.pack(ifindex, PACKET_MR_PROMISC, 0, b"")
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise NetdevError(f"cannot open AF_PACKET socket on {name}: {exc.strerror}", exc.errno) from None
    return sock


class PacketSocketIO:
    """Batch receive and send over a non-blocking packet or TAP-like fd.

    Shared by the providers whose dataplane is an AF_PACKET socket.
    """

    sock: socket.socket | None = None
    rx_errors = 0
    last_error = ""

    def fileno(self) -> int | None:
        return self.sock.fileno() if self.sock is not None else None

    def recv_batch(self, limit: int) -> list:
        sock = self.sock
        if sock is None:
            return []
        recv = sock.recv
        size = vnet.MAX_PACKET_LEN
        out = []
        append = out.append
        try:
            for _ in range(limit):
                append(recv(size))
        except BlockingIOError:
            pass
        except OSError as exc:
            # ENETDOWN when the device goes away; the link monitor handles the state.
            self.rx_errors += 1
            self.last_error = exc.strerror or str(exc)
        return out

    def send_batch(self, packets: list) -> int:
        sock = self.sock
        if sock is None:
            return 0
        send = sock.send
        sent = 0
        for pkt in packets:
            try:
                send(pkt)
            except BlockingIOError:
                break
            except OSError as exc:
                # EMSGSIZE, EINVAL (bad vnet header), ENETDOWN: lose this frame only.
                self.last_error = exc.strerror or str(exc)
                continue
            sent += 1
        return sent


@register
class SystemNetdev(PacketSocketIO, Netdev):
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
        self.sock = open_packet_socket(self.ifindex, self.name)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def status(self) -> LinkStatus:
        if self.sock is None:
            return LinkStatus(False, "not open")
        return LinkStatus(True)

    def info(self) -> dict[str, str]:
        return {"ifindex": str(self.ifindex)}
