"""`system`: an existing kernel netdev, reached through an AF_PACKET socket.

The socket is bound to the device's ifindex with PACKET_VNET_HDR, so GSO
super-frames and CHECKSUM_PARTIAL frames arrive whole with their offload
metadata and are sent on the same way (see ovslite.vnet); frames move through
mapped rings (pktring.py). Frames the host transmits on the device (ours
included) are not read back, as OVS's BPF filter does. Transmits go through
the device's qdisc layer (no PACKET_QDISC_BYPASS), where the kernel's packet
taps see them: tcpdump on a system port shows both directions, as with OVS.

Restarts lose no frames (ovslite.handover). Besides the ring socket, each port
has a "spill" socket: a plain packet socket with a 64 MB receive buffer. Both
are in one PACKET_FANOUT group whose classic BPF program picks the member
that gets each frame, the ring socket while this process runs, and whose
ROLLOVER flag sends a frame to the other member when the chosen one is full.
Both fds go to the next instance (systemd's fd store, from the moment the
port opens), so nothing the kernel queued is lost:
- A planned restart (`systemctl restart`, SIGUSR2) points the program at the
  spill socket, forwards what the ring holds, and hands over the spill
  socket alone.
- A crash leaves the ring socket alive in the fd store: frames fill its ring,
  then roll over to the spill socket. The next instance reads the abandoned
  ring (its slots in arrival order) and closes it.
Either way the next instance points the program at the spill socket, joins a
new ring socket, reads the backlog and points the program back at its ring
once the backlog is read. Lost is only what the old process had read and not
yet forwarded when it died.

The spill socket is read whenever it holds frames (`backlog_fileno`), not
only after a restart: a flood that fills the ring rolls over into it.

The program names members by their place. The group keeps them in the order
they joined, also when the device goes down and up; one that leaves is
replaced by the last. So the spill socket is always member 0, and the ring
socket member 1, or member 2 while an abandoned ring is still a member:
RING = 5 is both (the kernel takes the program's answer modulo the members).

While running, frames that rolled over wait until the ring is empty: a
burst that fills three quarters of the ring (the kernel's threshold) is
forwarded out of order, and a flood, during which the ring is never empty,
leaves the spill socket full of old frames: those that waited longer than
STALE_AFTER (kernel timestamps, SO_TIMESTAMPNS) are dropped as they are
read, not forwarded late. After a restart the whole backlog is forwarded.

Limits: one rx and one tx queue; a frame longer than MAX_PACKET_LEN (BIG TCP)
would be truncated.
"""

from __future__ import annotations

import errno
import socket
import time

import structlog

from .. import rtnl
from . import register
from .base import LinkStatus, Netdev, NetdevError
from .packetsock import (
    DROP_OUTGOING,
    RING,
    SPILL,
    adopt,
    close_fd,
    fanout_group,
    open_packet_sockets,
    open_spill_socket,
    read_abandoned_ring,
    select_member,
    set_filter,
)
from .pktring import FRAME_SIZE, TP_STATUS_USER, RingIO, queue_length, read_queue

log = structlog.get_logger("ovslite.netdev")

#: while running, a frame that rolled over to the spill socket this long ago
#: is dropped, not forwarded (TCP's minimum retransmission timeout)
STALE_AFTER = 0.2
#: after this long draining the spill socket (a flood faster than we forward),
#: the ring takes the frames back and the rest of the backlog is read beside it
DRAIN_LIMIT = 5.0


def ifindex_of(name: str) -> int:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise NetdevError(f"interface {name!r} does not exist", errno.ENODEV) from None


def set_link_up(ifindex: int) -> None:
    rtnl.call(lambda ipr: ipr.link("set", index=ifindex, state="up"))


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
        #: prepare_handover() was called: the spill socket keeps the frames
        self._handing_over = False
        self._drain_until: float | None = None
        #: frames read from an abandoned ring, forwarded before the spill socket's
        self._abandoned: list = []
        #: frames dropped from the spill socket for waiting longer than STALE_AFTER
        self.rx_stale = 0

    def open(self, inherited: list[int] | None = None) -> None:
        try:
            self.ifindex = ifindex_of(self.name)
        except NetdevError:
            for fd in inherited or ():
                close_fd(fd)
            raise
        spill, old_ring = adopt(inherited, self.name) if inherited else (None, None)
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
            # one packet socket fewer per port.
            self.sock, self.ring, self.tx_sock = open_packet_sockets(
                self.ifindex, self.name, group, tx=spill is None)
            if spill is not None:
                self.tx_sock = spill
            if spill is not None and not adopted:
                # The ring has joined and gets every frame; the spill socket
                # takes them once the ring is full or gone.
                set_filter(spill, *DROP_OUTGOING)
        except (NetdevError, OSError) as exc:
            for sock in (spill, old_ring):
                if sock is not None:
                    sock.close()
            if isinstance(exc, NetdevError):
                raise
            raise NetdevError(f"cannot open AF_PACKET socket on {self.name}: {exc.strerror}",
                              exc.errno) from None
        self.spill = spill
        self._reset_rings()
        if old_ring is not None:
            # No frame goes to it any more (the program picks the spill
            # socket, which has room); once our copy and the fd store's are
            # closed it leaves the group, and our ring takes its place.
            self._abandoned = read_abandoned_ring(old_ring, self.name)
            old_ring.close()
        if adopted:
            self._spilling = True
            self._drain_until = None
            if not self._abandoned and queue_length(spill) == 0:
                self._select_ring()  # an idle port: straight back to the ring
            log.info("port re-attached", port=self.name, abandoned_ring=old_ring is not None,
                     abandoned_frames=len(self._abandoned), draining=self._spilling)

    def _new_spill(self) -> socket.socket | None:
        try:
            return open_spill_socket(self.ifindex, self.name)
        except OSError as exc:
            log.warning("no spill socket: frames arriving during a restart will be lost",
                        port=self.name, error=exc.strerror or str(exc))
            return None

    # -- the spill socket's backlog -------------------------------------------------
    def backlog_fileno(self) -> int | None:
        return self.spill.fileno() if self.spill is not None else None

    def recv_backlog(self, limit: int) -> list:
        """Frames from the spill socket (and first, an abandoned ring's). After
        a restart, once the backlog is read, the ring gets the frames again."""
        if self._handing_over or self.spill is None:
            return []  # they stay where the next instance finds them
        ring = self.ring
        if not self._spilling and ring is not None and ring[self._rx * FRAME_SIZE] & TP_STATUS_USER:
            # A flood rolled over into the spill socket: the ring goes first,
            # so what the flood costs is dropped frames, not slower ones.
            return []
        out, self._abandoned = self._abandoned, []  # at most one ring: one batch
        # After a restart the backlog is old by design; else old means a flood.
        older_than = None if self._spilling else time.time() - STALE_AFTER
        emptied, stale = read_queue(self.spill, limit, out, older_than)
        if stale:
            self.rx_stale += stale
        if self._spilling:
            now = time.monotonic()
            if self._drain_until is None:
                self._drain_until = now + DRAIN_LIMIT
            if emptied or now > self._drain_until:
                if not emptied:
                    log.warning("spill socket still not drained: the ring takes over",
                                port=self.name, seconds=DRAIN_LIMIT)
                if self._select_ring():
                    log.info("port drained its spill socket", port=self.name)
                    # what came between the last read and the switch
                    read_queue(self.spill, limit, out)
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
        if self.spill is None:
            return []
        if self._handing_over or self.sock is None:
            return [self.spill.fileno()]  # the ring is read to the end before we go
        return [self.spill.fileno(), self.sock.fileno()]  # in case we crash

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
        self._spilling = False
        self._abandoned = []
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
        if self._spilling and not self._handing_over:
            info["handover"] = "draining the spill socket"
        return info

    def drops(self) -> dict[str, int]:
        return {"truncated": self.rx_truncated, "stale": self.rx_stale}
