"""`system`: an existing kernel netdev, reached through an AF_PACKET socket.

The socket is bound to the device's ifindex with PACKET_VNET_HDR, so GSO
super-frames and CHECKSUM_PARTIAL frames arrive whole with their offload
metadata and are sent on the same way (see ovslite.vnet); frames move through
mapped rings (pktring.py). Frames the host transmits on the device (ours
included) are not read back, as OVS's BPF filter does. Transmits go through
the device's qdisc layer (no PACKET_QDISC_BYPASS), where the kernel's packet
taps see them: tcpdump on a system port shows both directions, as with OVS.

Restarts lose no frames (ovslite.handover). Besides the ring socket, each port
has a "spill" socket: a plain packet socket with a 64 MB receive buffer that
is handed over (systemd's fd store, or exec) while the ring socket is not.
Both are in one PACKET_FANOUT group whose classic BPF program picks the
member that gets each frame: the ring socket while this process runs. When
the process goes, by exec, exit or crash alike, the kernel closes the ring
socket, it leaves the group, and every frame lands on the spill socket
instead, in kernel memory (about 50,000 small frames), until the next
instance takes the spill socket over, joins a new ring socket to the group,
reads the backlog ("draining": fileno() is the spill socket's meanwhile), and
switches the program back to its ring in one setsockopt once the backlog is
read. No frame is lost or duplicated at either switch; what is lost is what
the old process had read and not yet forwarded, and on a crash, what was
still in its ring, or arrived until the kernel released the ring socket: a
dying process releases its sockets last fd first, each packet socket after an
RCU grace period (10-20 ms), so the spill socket doubles as the send-only
socket, and the ring socket is the only one the process alone holds.
Changing the rings of one socket instead of all this would unhook it for a
grace period (frames lost) and purge its queue.

The group keeps its members in the order they joined (the spill socket
first), also when the device goes down and up, so the program names the ring
socket by its place: 1.

Limits: one rx and one tx queue; a frame longer than MAX_PACKET_LEN (BIG TCP)
would be truncated.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time

import structlog

from .. import rtnl
from . import register
from .base import LinkStatus, Netdev, NetdevError
from .pktring import (
    BPF_RET_K,
    DROP_ALL,
    DROP_OUTGOING,
    PACKET_AUXDATA,
    RingIO,
    bpf_program,
    map_rings,
    queue_length,
    read_queue,
    set_filter,
    setup_rings,
)

log = structlog.get_logger("ovslite.netdev")

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_VNET_HDR = 15
PACKET_FANOUT = 18
PACKET_FANOUT_DATA = 22
PACKET_IGNORE_OUTGOING = 23
PACKET_FANOUT_CBPF = 6
PACKET_FANOUT_FLAG_UNIQUEID = 0x2000
PACKET_FANOUT_FLAG_IGNORE_OUTGOING = 0x4000  # Linux 6.9; else the socket filter does it
ETH_P_ALL = 0x0003
SO_SNDBUFFORCE = 32  # not exported by the socket module
SO_RCVBUFFORCE = 33
SOCKET_BUFFER = 4 * 1024 * 1024
#: receive buffer of the spill socket: about 50,000 small frames, in kernel memory
SPILL_BUFFER = 64 * 1024 * 1024
#: the fanout group's members, in the order they join
SPILL, RING = 0, 1
#: after this long draining the spill socket (a flood faster than we forward),
#: what is left in it is dropped and the ring takes over
DRAIN_LIMIT = 5.0

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
    for opt in (SO_RCVBUFFORCE, SO_SNDBUFFORCE):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        except PermissionError:  # without CAP_NET_ADMIN the default size will do
            pass
    sock.setblocking(False)
    return sock


def _promiscuous(sock: socket.socket, ifindex: int) -> None:
    mreq = _PACKET_MREQ.pack(ifindex, PACKET_MR_PROMISC, 0, b"")
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)


def select_member(sock: socket.socket, index: int) -> None:
    """Send every frame of `sock`'s fanout group to its member number `index`
    (a member that is gone counts modulo the members left)."""
    buf, fprog = bpf_program((BPF_RET_K, 0, 0, index))
    sock.setsockopt(SOL_PACKET, PACKET_FANOUT_DATA, fprog)
    del buf


def open_spill_socket(ifindex: int, name: str) -> socket.socket:
    """The spill socket, first member of a new fanout group. It gets no frame
    until the group's program says so (a ring socket must join first)."""
    sock = _packet_socket(name, 0)
    try:
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SPILL_BUFFER)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SPILL_BUFFER)
        _promiscuous(sock, ifindex)
        set_filter(sock, *DROP_ALL)  # joining needs a bound socket: take nothing meanwhile
        sock.bind((name, ETH_P_ALL))
        flags = PACKET_FANOUT_CBPF | PACKET_FANOUT_FLAG_UNIQUEID
        try:
            sock.setsockopt(SOL_PACKET, PACKET_FANOUT,
                            (flags | PACKET_FANOUT_FLAG_IGNORE_OUTGOING) << 16)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            sock.setsockopt(SOL_PACKET, PACKET_FANOUT, flags << 16)  # before Linux 6.9
        select_member(sock, RING)  # the ring socket, once it has joined
    except OSError:
        sock.close()
        raise
    return sock  # still taking nothing: see SystemNetdev.open


def fanout_group(sock: socket.socket) -> int:
    """What PACKET_FANOUT reports (group id, type and flags; 0: in no group)."""
    return sock.getsockopt(SOL_PACKET, PACKET_FANOUT)


def open_packet_sockets(ifindex: int, name: str, group: int = 0, tx: bool = True):
    """(socket with mapped rings, plain send-only socket or None) on `ifindex`.

    Both carry vnet headers; the first is promiscuous and reads no outgoing
    frame. With `group` (fanout_group() of a spill socket) it joins that group
    and gets the frames its program gives it; else it gets them all. The
    second (if `tx`) is bound with protocol 0, so it receives nothing.
    """
    socks = []
    try:
        sock = _packet_socket(name, 0)  # protocol 0: no frame before bind()
        socks.append(sock)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        ring = setup_rings(sock)
        _promiscuous(sock, ifindex)
        if group:
            set_filter(sock, *DROP_ALL)  # not in the group yet: every frame goes to both
        sock.bind((name, ETH_P_ALL))
        if group:
            sock.setsockopt(SOL_PACKET, PACKET_FANOUT, group)
        set_filter(sock, *DROP_OUTGOING)  # in a group PACKET_IGNORE_OUTGOING does not apply
        tx_sock = None
        if tx:
            tx_sock = _packet_socket(name, 0)
            socks.append(tx_sock)
            tx_sock.bind((name, 0))
    except OSError as exc:
        for s in socks:
            s.close()
        raise NetdevError(f"cannot open AF_PACKET socket on {name}: {exc.strerror}", exc.errno) from None
    return sock, ring, tx_sock


def adopt_spill(fds: list[int], name: str) -> socket.socket | None:
    """The handed-over spill socket of device `name` among `fds`; any other fd is closed."""
    found = None
    for fd in fds:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            log.warning("handed-over fd is not a socket: closed", port=name, error=exc.strerror)
            _close_fd(fd)
            continue
        why = "a second spill socket" if found is not None else _not_spill(sock, name)
        if why is None:
            sock.setblocking(False)
            found = sock
        else:
            log.warning("handed-over socket not usable: closed", port=name, reason=why)
            sock.close()
    return found


def _not_spill(sock: socket.socket, name: str) -> str | None:
    """Why `sock` is not a spill socket on device `name` (None: it is)."""
    if sock.family != socket.AF_PACKET or sock.type != socket.SOCK_RAW:
        return "not a raw packet socket"
    try:
        bound = sock.getsockname()[0]
        vnet_hdr = sock.getsockopt(SOL_PACKET, PACKET_VNET_HDR)
        group = fanout_group(sock)
    except OSError as exc:
        return exc.strerror or str(exc)
    if bound != name:
        return f"bound to {bound or 'a device that is gone'}, not {name}"
    if not vnet_hdr:
        return "no PACKET_VNET_HDR"
    if (group >> 16) & 0xFF != PACKET_FANOUT_CBPF:
        return "not in a fanout group of ours"
    try:
        map_rings(sock).close()
    except OSError:
        return None  # no ring: right
    return "it has rings"


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


@register
class SystemNetdev(RingIO, Netdev):
    """An existing kernel interface (physical NIC, veth end, a VM's tap)."""

    type = "system"

    def __init__(self, name: str, options: dict[str, str] | None = None):
        super().__init__(name, options)
        self.ifindex = 0
        self.sock = None
        #: the spill socket: handed over, gets the frames while no ring socket does
        self.spill: socket.socket | None = None
        #: whether the spill socket gets the frames (the group's program says so)
        self._spilling = False
        #: whether the spill socket still holds frames to read (fileno() is its)
        self.draining = False
        #: prepare_handover() was called: the spill socket keeps the frames
        self._handing_over = False
        self._drain_until: float | None = None

    def open(self, inherited: list[int] | None = None) -> None:
        try:
            self.ifindex = ifindex_of(self.name)
        except NetdevError:
            for fd in inherited or ():
                _close_fd(fd)
            raise
        spill = adopt_spill(inherited, self.name) if inherited else None
        adopted = spill is not None
        try:
            try:
                set_link_up(self.ifindex)
            except Exception as exc:  # pyroute2 raises NetlinkError and others
                raise NetdevError(f"cannot bring {self.name} up: {exc}") from None
            if adopted:
                select_member(spill, SPILL)  # the backlog first: our ring joins idle
            else:
                spill = self._new_spill()
            group = fanout_group(spill) if spill is not None else 0
            # The spill socket also sends what the ring cannot (see RingIO):
            # one packet socket fewer to release when the process dies.
            self.sock, self.ring, self.tx_sock = open_packet_sockets(
                self.ifindex, self.name, group, tx=spill is None)
            if spill is not None:
                self.tx_sock = spill
            if spill is not None and not adopted:
                # The ring has joined and gets every frame; the spill socket
                # takes them only once the ring is gone (exec, exit, crash).
                set_filter(spill, *DROP_OUTGOING)
        except (NetdevError, OSError) as exc:
            if spill is not None:
                spill.close()
            if isinstance(exc, NetdevError):
                raise
            raise NetdevError(f"cannot open AF_PACKET socket on {self.name}: {exc.strerror}",
                              exc.errno) from None
        self.spill = spill
        self._reset_rings()
        if adopted:
            backlog = queue_length(spill) > 0
            self._spilling = True
            if not backlog:  # an idle port: straight back to the ring
                self._select_ring()
            if backlog or queue_length(spill) > 0:
                self.draining = True
                self._drain_until = None
                self.recv_batch = self._drain_batch  # until the backlog is read
            log.info("port re-attached", port=self.name, draining=self.draining)

    def _new_spill(self) -> socket.socket | None:
        try:
            return open_spill_socket(self.ifindex, self.name)
        except OSError as exc:
            log.warning("no spill socket: frames arriving during a restart will be lost",
                        port=self.name, error=exc.strerror or str(exc))
            return None

    # -- draining the spill socket after a restart --------------------------------
    def fileno(self) -> int | None:
        if self.draining:
            return self.spill.fileno()
        return self.sock.fileno() if self.sock is not None else None

    def _drain_batch(self, limit: int) -> list:
        """recv_batch while the spill socket gets the frames: read its backlog;
        once it is empty, give the frames back to the ring, read what came in
        between, and return to the ring."""
        out: list = []
        now = time.monotonic()
        if self._drain_until is None:
            self._drain_until = now + DRAIN_LIMIT
        emptied = read_queue(self.spill, limit, out)
        if self._handing_over:
            return out  # the frames stay with the spill socket from now on
        if self._spilling and (emptied or now > self._drain_until):
            if not emptied:
                log.warning("spill socket still not drained: the ring takes over",
                            port=self.name, seconds=DRAIN_LIMIT)
            if not self._select_ring():
                return out  # try again at the next batch
            # what came between the last read and the switch (the spill
            # socket gets nothing more, so this ends)
            emptied = read_queue(self.spill, limit, out)
        if emptied and not self._spilling:
            self.draining = False
            self.__dict__.pop("recv_batch", None)
            log.info("port drained its spill socket", port=self.name)
            if self.changed is not None:
                self.changed()  # the loop now waits on the ring socket
        return out

    def _select_ring(self) -> bool:
        """Give the frames back to our ring socket."""
        try:
            select_member(self.spill, RING)
        except OSError as exc:
            self.last_error = exc.strerror or str(exc)
            log.error("cannot give the frames back to the ring", port=self.name,
                      error=self.last_error)
            return False
        self._spilling = False
        return True

    # -- hand-over ----------------------------------------------------------------
    def handover_fds(self) -> list[int]:
        return [self.spill.fileno()] if self.spill is not None else []

    def prepare_handover(self) -> None:
        """From now on frames queue on the spill socket; what the ring holds is
        still read (the daemon forwards it before exiting)."""
        self._handing_over = True
        if self.spill is None or self._spilling:
            return
        try:
            select_member(self.spill, SPILL)
        except OSError as exc:
            log.error("cannot switch to the spill socket: frames will be lost",
                      port=self.name, error=exc.strerror)
            return
        self._spilling = True

    def close(self) -> None:
        self.__dict__.pop("recv_batch", None)
        self.draining = self._spilling = False
        if self.tx_sock is self.spill:
            self.tx_sock = None
        self.close_rings()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.spill is not None:
            self.spill.close()
            self.spill = None

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
        info = {"ifindex": str(self.ifindex)}
        if self.draining:
            info["handover"] = "draining the spill socket"
        return info
