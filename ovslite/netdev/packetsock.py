"""Packet sockets of a `system` port: the ring socket, the spill socket and
their PACKET_FANOUT group (see system.py for how restarts use them).

- open_packet_sockets: the socket with mapped rings (pktring.py), promiscuous,
  reading no outgoing frame, optionally joining a spill socket's group.
- open_spill_socket: a plain socket with a big receive buffer, first member
  of a new group (classic BPF program, ROLLOVER, IGNORE_OUTGOING where the
  kernel has it); select_member points the group's program at a member.
- adopt / read_abandoned_ring: telling apart the sockets a previous instance
  handed over, and reading the ring a crashed one left.

Nothing here blocks for long: setsockopt and bind, no netlink.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

import structlog

from .. import vnet
from .base import NetdevError
from .pktring import (
    BPF_RET_K,
    DROP_ALL,
    DROP_OUTGOING,
    PACKET_AUXDATA,
    PACKET_VERSION,
    SO_TIMESTAMPNS,
    TPACKET_V2,
    bpf_program,
    map_any_rings,
    read_abandoned,
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
PACKET_FANOUT_FLAG_ROLLOVER = 0x1000
PACKET_FANOUT_FLAG_UNIQUEID = 0x2000
PACKET_FANOUT_FLAG_IGNORE_OUTGOING = 0x4000  # Linux 6.9; else the socket filter does it
ETH_P_ALL = 0x0003
SO_SNDBUFFORCE = 32  # not exported by the socket module
SO_RCVBUFFORCE = 33
#: socket buffers; on the ring socket the receive buffer holds the whole
#: copies of frames too big for a slot (every GSO frame): about 250 of 64 KB,
#: as many as the ring has slots, so a ring that fills is what overflows
#: first (frames then roll over), not this buffer (frames then come cut short)
SOCKET_BUFFER = 16 * 1024 * 1024
#: receive buffer of the spill socket: about 50,000 small frames, in kernel memory
SPILL_BUFFER = 64 * 1024 * 1024
#: what the group's program answers: the spill socket, or our ring (see system.py)
SPILL, RING = 0, 5
_PACKET_MREQ = struct.Struct("iHH8s")


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
    (modulo the number of members)."""
    buf, fprog = bpf_program((BPF_RET_K, 0, 0, index))
    sock.setsockopt(SOL_PACKET, PACKET_FANOUT_DATA, fprog)
    del buf


def open_spill_socket(ifindex: int, name: str) -> socket.socket:
    """The spill socket, first member of a new fanout group. It gets no frame
    until the group's program says so (a ring socket must join first)."""
    sock = _packet_socket(name, 0)
    try:
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SPILL_BUFFER)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SPILL_BUFFER)
        _promiscuous(sock, ifindex)
        set_filter(sock, *DROP_ALL)  # joining needs a bound socket: take nothing meanwhile
        sock.bind((name, ETH_P_ALL))
        flags = PACKET_FANOUT_CBPF | PACKET_FANOUT_FLAG_UNIQUEID | PACKET_FANOUT_FLAG_ROLLOVER
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


def adopt(fds: list[int], name: str) -> tuple[socket.socket | None, socket.socket | None]:
    """(spill socket, abandoned ring socket) of device `name` among handed-over
    `fds`, either None if absent; any other fd is closed. The ring socket must
    be in the spill socket's group."""
    spill, rings = None, []
    for fd in fds:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            log.warning("handed-over fd is not a socket: closed", port=name, error=exc.strerror)
            close_fd(fd)
            continue
        why, has_rings = _not_ours(sock, name)
        if why is None and not has_rings and spill is not None:
            why = "a second spill socket"
        if why is not None:
            log.warning("handed-over socket not usable: closed", port=name, reason=why)
            sock.close()
        elif has_rings:
            rings.append(sock)
        else:
            spill = sock
    ring = None
    for sock in rings:
        if ring is None and spill is not None and fanout_group(sock) == fanout_group(spill):
            ring = sock
        else:
            log.warning("handed-over ring socket not usable: closed", port=name,
                        reason="not in the spill socket's group")
            sock.close()
    for sock in (spill, ring):
        if sock is not None:
            sock.setblocking(False)
    if spill is not None:
        try:  # an older version's spill socket has no timestamps
            spill.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            pass
    return spill, ring


def _not_ours(sock: socket.socket, name: str) -> tuple[str | None, bool]:
    """(why `sock` is not a packet socket of ours on device `name` or None,
    whether it has rings)."""
    if sock.family != socket.AF_PACKET or sock.type != socket.SOCK_RAW:
        return "not a raw packet socket", False
    try:
        bound = sock.getsockname()[0]
        vnet_hdr = sock.getsockopt(SOL_PACKET, PACKET_VNET_HDR)
        group = fanout_group(sock)
        # the ring socket is the one switched to TPACKET_V2 (a spill socket keeps V1)
        has_rings = sock.getsockopt(SOL_PACKET, PACKET_VERSION) == TPACKET_V2
    except OSError as exc:
        return exc.strerror or str(exc), False
    if bound != name:
        return f"bound to {bound or 'a device that is gone'}, not {name}", False
    if not vnet_hdr:
        return "no PACKET_VNET_HDR", False
    if (group >> 16) & 0xFF != PACKET_FANOUT_CBPF:
        return "not in a fanout group of ours", False
    return None, has_rings


def close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def read_abandoned_ring(sock: socket.socket, name: str) -> list:
    """The frames a crashed instance left in the ring of `sock`, oldest first."""
    out: list = []
    try:
        ring, rx_frames, frame_size = map_any_rings(sock)
    except OSError as exc:  # rings of a geometry this version does not know
        log.warning("cannot map the abandoned ring: its frames are lost", port=name,
                    error=exc.strerror or str(exc))
        return out

    def recv_whole():
        try:
            return sock.recv(vnet.MAX_PACKET_LEN, socket.MSG_DONTWAIT)
        except OSError:
            return None

    try:
        read_abandoned(ring, recv_whole, out, rx_frames, frame_size)
    finally:
        ring.close()
    return out
