"""PACKET_MMAP rings for `system` ports: receive and send without a syscall per frame.

Receive: a TPACKET_V2 ring of small slots. The kernel writes each frame, with
its virtio_net_hdr (PACKET_VNET_HDR) and its VLAN tag in the slot header, and
flips the slot's status; we read slots in place and hand them back. A frame
too big for a slot (a 64 KB GSO frame) gets a truncated slot marked
TP_STATUS_COPY and, thanks to PACKET_COPY_THRESH, travels whole on the socket's
ordinary queue, from which it is read with recv() at that point in the order.

The kernel takes an 802.1Q tag out of the frame before AF_PACKET sees it
(skb_vlan_untag), so a plain recv() would lose tags; the slot header has them
and we put them back inline (csum_start moves by 4 with the tag).

Send: a TPACKET_V2 ring; frames are copied into free slots and one empty
sendto() per batch makes the kernel transmit them all. A frame too big for a
slot, or one that finds its slot still in flight, is sent with send() on a
second packet socket (once a socket has a TX ring, the kernel sends only ring
slots from it and ignores the buffer passed to send()), after the ring is
kicked, which keeps the order: a kick transmits before it returns.

A plain packet socket without rings (the spill socket of system.py, which
holds the frames that arrive while the daemon restarts) is read with
read_queue: one recvmsg() per frame, VLAN tags from PACKET_AUXDATA. The
ring of a process that crashed is read once by the next one (read_abandoned).

Limits: one ring pair per port (RX_FRAMES + TX_FRAMES slots of FRAME_SIZE bytes).
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import socket
import struct
import termios

from .. import vnet

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_COPY_THRESH = 7
PACKET_VERSION = 10
PACKET_TX_RING = 13
TPACKET_V2 = 1

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_COPY = 1 << 1
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
PACKET_AUXDATA = 8
SO_ATTACH_FILTER = 26
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 1
TP_STATUS_WRONG_FORMAT = 4

#: Slots of 1 KB: a frame of up to 948 bytes (982 to send) fits one; a longer
#: one travels beside the ring (the socket's queue, PACKET_COPY_THRESH, or a
#: direct send), as every GSO frame does anyway. The rings' memory counts in
#: the daemon's RSS: 320 KB a port, where 2 KB slots cost 768 KB.
FRAME_SIZE = 1024
RX_FRAMES = 256
TX_FRAMES = 64
BLOCK_SIZE = 1 << 16  # 64 slots a block
#: tpacket2_hdr: status, len, snaplen, mac, net, sec, nsec, vlan_tci, vlan_tpid
HDR = struct.Struct("=IIIHHIIHH4x")
#: the fields a reader needs: status, len, snaplen, mac, vlan_tci, vlan_tpid
RX_HDR = struct.Struct("=IIIH2x8xHH4x")
#: its first two fields, as a frame to send has them: status, len
SEND_REQUEST = struct.Struct("=II")
TX_DATA = 32  # TPACKET2_HDRLEN - sizeof(struct sockaddr_ll): where a tx frame's data starts
TX_MAX = FRAME_SIZE - TX_DATA
VNET = vnet.VNET_HDR_LEN
ZERO_STATUS = bytes(4)
ETH_P_8021Q = 0x8100
MSG_DONTWAIT = socket.MSG_DONTWAIT
RING_BYTES = (RX_FRAMES + TX_FRAMES) * FRAME_SIZE
#: (RX slots, slot size, TX slots) of every ring geometry a handed-over socket
#: may have: this version's first, then older ones
GEOMETRIES = ((RX_FRAMES, FRAME_SIZE, TX_FRAMES), (256, 2048, 128))
#: struct tpacket_auxdata: status, len, snaplen, mac, net, vlan_tci, vlan_tpid
AUXDATA = struct.Struct("=IIIHHHH")
SO_TIMESTAMPNS = 35  # also the cmsg type (SCM_TIMESTAMPNS); not exported by the socket module
#: struct timespec
TIMESPEC = struct.Struct("=qq")
AUX_SPACE = socket.CMSG_SPACE(AUXDATA.size) + socket.CMSG_SPACE(TIMESPEC.size)
#: struct sock_filter: code, jt, jf, k
BPF_INSN = struct.Struct("=HBBI")
BPF_RET_K = 0x06
BPF_LD_B_ABS = 0x30
BPF_JEQ_K = 0x15
SKF_AD_PKTTYPE = 0xFFFFF000 + 4  # SKF_AD_OFF + SKF_AD_PKTTYPE
PACKET_OUTGOING = 4
#: `ret #0`: accept nothing
DROP_ALL = ((BPF_RET_K, 0, 0, 0),)
#: accept everything but frames the host transmits (PACKET_OUTGOING)
DROP_OUTGOING = ((BPF_LD_B_ABS, 0, 0, SKF_AD_PKTTYPE), (BPF_JEQ_K, 0, 1, PACKET_OUTGOING),
                 (BPF_RET_K, 0, 0, 0), (BPF_RET_K, 0, 0, 0xFFFFFFFF))


def setup_rings(sock: socket.socket) -> mmap.mmap:
    """Switch `sock` to TPACKET_V2 and map an RX ring followed by a TX ring.

    PACKET_VNET_HDR must already be set (the kernel refuses it once rings exist).
    """
    sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
    sock.setsockopt(SOL_PACKET, PACKET_COPY_THRESH, 1)
    for opt, frames in ((PACKET_RX_RING, RX_FRAMES), (PACKET_TX_RING, TX_FRAMES)):
        blocks = frames * FRAME_SIZE // BLOCK_SIZE
        sock.setsockopt(SOL_PACKET, opt, struct.pack("IIII", BLOCK_SIZE, blocks, FRAME_SIZE, frames))
    return map_rings(sock)


def map_rings(sock: socket.socket, size: int = RING_BYTES) -> mmap.mmap:
    """Map the rings `sock` already has, `size` bytes in all.

    OSError (EINVAL) if it has none, or rings of another size.
    """
    return mmap.mmap(sock.fileno(), size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


def map_any_rings(sock: socket.socket) -> tuple[mmap.mmap, int, int]:
    """(mapping, RX slots, slot size) of a handed-over socket's rings,
    whichever of GEOMETRIES they have. OSError if none fits (or it has none)."""
    error = None
    for rx_frames, frame_size, tx_frames in GEOMETRIES:
        try:
            return map_rings(sock, (rx_frames + tx_frames) * frame_size), rx_frames, frame_size
        except OSError as exc:
            error = exc
    raise error


def read_ring(ring: mmap.mmap, i: int, limit: int, recv_whole, out: list,
              rx_frames: int = RX_FRAMES, frame_size: int = FRAME_SIZE) -> tuple[int, int]:
    """Append up to `limit` packets from RX slots starting at slot `i` to `out`.

    Stops at the first slot the kernel still owns. Returns (the next slot to
    read, frames dropped because they came cut short). `recv_whole()` reads a
    frame too big for its slot from the socket's queue, where the kernel puts
    a copy while the socket's receive buffer has room; without one, the slot
    holds a truncated frame, which must not be forwarded.
    """
    unpack = RX_HDR.unpack_from
    append = out.append
    cut = 0
    for _ in range(limit):
        base = i * frame_size
        status, length, snaplen, mac, tci, tpid = unpack(ring, base)
        if not status & TP_STATUS_USER:
            break
        if status & TP_STATUS_COPY:
            pkt = recv_whole()
        elif snaplen < length:
            pkt = None
            cut += 1
        else:
            pkt = ring[base + mac - VNET : base + mac + snaplen]
        ring[base : base + 4] = ZERO_STATUS
        i = i + 1 if i + 1 < rx_frames else 0
        if pkt is None:
            continue
        if status & TP_STATUS_VLAN_VALID:
            pkt = vnet.push_tag(pkt, tci, tpid if status & TP_STATUS_VLAN_TPID_VALID else ETH_P_8021Q)
        append(pkt)
    return i, cut


def read_abandoned(ring: mmap.mmap, recv_whole, out: list,
                   rx_frames: int = RX_FRAMES, frame_size: int = FRAME_SIZE) -> None:
    """Append every packet waiting in the RX ring of a process that died to
    `out`, oldest first.

    Where that process stopped reading is unknown, and the ring may be full,
    so the slots are taken in the order of their kernel timestamps.
    """
    waiting = []
    for i in range(rx_frames):
        status, _len, _snap, _mac, _net, sec, nsec, _tci, _tpid = HDR.unpack_from(ring, i * frame_size)
        if status & TP_STATUS_USER:
            waiting.append((sec, nsec, i))
    waiting.sort()
    for _sec, _nsec, i in waiting:
        read_ring(ring, i, 1, recv_whole, out, rx_frames, frame_size)


def read_queue(sock: socket.socket, limit: int, out: list,
               older_than: float | None = None) -> tuple[bool, int]:
    """Read up to `limit` packets from the ordinary queue of a packet socket
    without rings (PACKET_VNET_HDR and PACKET_AUXDATA set) and append them to
    `out`; with `older_than` (a time.time() value, SO_TIMESTAMPNS set), drop
    those that arrived before it instead.

    Returns (whether the queue ran dry, how many were dropped). A VLAN tag the
    kernel took out of a frame is put back from the auxiliary data, as
    recv_batch does from the slot header.
    """
    recvmsg = sock.recvmsg
    append = out.append
    dropped = 0
    for _ in range(limit):
        try:
            pkt, ancillary, _flags, _addr = recvmsg(vnet.MAX_PACKET_LEN, AUX_SPACE, MSG_DONTWAIT)
        except BlockingIOError:
            return True, dropped
        except OSError:  # a pending socket error (ENETDOWN...), reported once
            continue
        stale = False
        for level, kind, data in ancillary:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= AUXDATA.size:
                status, _len, _snap, _mac, _net, tci, tpid = AUXDATA.unpack_from(data)
                if status & TP_STATUS_VLAN_VALID:
                    pkt = vnet.push_tag(
                        pkt, tci, tpid if status & TP_STATUS_VLAN_TPID_VALID else ETH_P_8021Q)
            elif (older_than is not None and level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS
                  and len(data) >= TIMESPEC.size):
                sec, nsec = TIMESPEC.unpack_from(data)
                stale = sec + nsec * 1e-9 < older_than
        if stale:
            dropped += 1
        else:
            append(pkt)
    return False, dropped


def queue_length(sock: socket.socket) -> int:
    """Bytes of the first frame on the socket's ordinary queue (0: empty)."""
    buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, bytes(4))
    return struct.unpack("i", buf)[0]


def bpf_program(*instructions: tuple[int, int, int, int]):
    """(buffer, struct sock_fprog) for classic BPF `instructions` (code, jt, jf, k).

    Keep the buffer alive until the setsockopt that takes the program returns.
    """
    raw = b"".join(BPF_INSN.pack(*ins) for ins in instructions)
    buf = ctypes.create_string_buffer(raw, len(raw))
    return buf, struct.pack("@HP", len(instructions), ctypes.addressof(buf))


def set_filter(sock: socket.socket, *instructions: tuple[int, int, int, int]) -> None:
    """Attach (or replace) the classic BPF socket filter of `sock`."""
    buf, fprog = bpf_program(*instructions)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    del buf


class RingIO:
    """Batch receive and send over a packet socket with mapped rings."""

    sock: socket.socket | None = None
    tx_sock: socket.socket | None = None  # for frames that do not fit a ring slot
    ring: mmap.mmap | None = None
    last_error = ""
    #: frames dropped because the kernel cut them to their slot (no room for a copy)
    rx_truncated = 0

    def _reset_rings(self) -> None:
        self._rx = 0
        self._tx = 0

    def fileno(self) -> int | None:
        return self.sock.fileno() if self.sock is not None else None

    def recv_batch(self, limit: int) -> list:
        ring = self.ring
        if ring is None:
            return []
        out = []
        self._rx, cut = read_ring(ring, self._rx, limit, self._recv_whole, out)
        if cut:
            self.rx_truncated += cut
        return out

    def _recv_whole(self) -> bytes | None:
        try:
            return self.sock.recv(vnet.MAX_PACKET_LEN, MSG_DONTWAIT)
        except OSError as exc:  # the copy was dropped (receive buffer full)
            self.last_error = exc.strerror or str(exc)
            return None

    def send_batch(self, packets: list) -> int:
        ring = self.ring
        if ring is None:
            return 0
        base0 = RX_FRAMES * FRAME_SIZE
        request = SEND_REQUEST.pack_into
        i = self._tx
        queued = sent = 0
        for pkt in packets:
            n = len(pkt)
            base = base0 + i * FRAME_SIZE
            slot = ring[base]
            if slot == TP_STATUS_WRONG_FORMAT:  # the kernel refused it earlier: reuse
                self.last_error = "malformed frame in the tx ring"
                slot = TP_STATUS_AVAILABLE
            if n > TX_MAX or slot != TP_STATUS_AVAILABLE:
                # Too big for a slot, or the slot is still in flight: keep the
                # order by flushing the ring first, then send this one directly.
                if queued:
                    self._kick()
                    queued = 0
                try:
                    self.tx_sock.send(pkt, MSG_DONTWAIT)
                    sent += 1
                except OSError as exc:
                    self.last_error = exc.strerror or str(exc)
                continue
            ring[base + TX_DATA : base + TX_DATA + n] = pkt
            # status and length in one write: the kernel looks at the slot
            # only during our kick, so the order of the two writes is free
            request(ring, base, TP_STATUS_SEND_REQUEST, n)
            i = i + 1 if i + 1 < TX_FRAMES else 0
            queued += 1
            sent += 1
        self._tx = i
        if queued:
            self._kick()
        return sent

    def _kick(self) -> None:
        try:
            self.sock.send(b"", MSG_DONTWAIT)
        except BlockingIOError:
            pass  # the kernel sends what it can; the rest goes on the next kick
        except OSError as exc:
            self.last_error = exc.strerror or str(exc)

    def close_rings(self) -> None:
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        if self.tx_sock is not None:
            self.tx_sock.close()
            self.tx_sock = None
