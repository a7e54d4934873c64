"""Shared plumbing for TAP-backed providers (`internal`, `tap`).

The TAP is opened with IFF_VNET_HDR and told by TUNSETOFFLOAD that ovslite
accepts checksum-partial and TSO frames, so the host stack behind it sends
64 KB GSO frames with a virtio_net_hdr, the same packet layout AF_PACKET gives
(ovslite.vnet). Frames are read and written whole with one syscall each.

A TAP lives as long as one fd is attached to it (unless persistent), wherever
that fd is: the daemon hands its TAP fds over across a restart (ovslite.handover)
and the next instance re-attaches with check_tap() instead of TUNSETIFF, which
would look the name up in the daemon's namespace, not in the one the device
was moved to.

What the host or a container sends during a restart waits in the TAP's queue
(txqueuelen frames; a full queue drops). RestartQueue lengthens the queue of
a TAP ovslite made for a planned restart and shortens it again once the next
instance has read the backlog. Such TAPs are made with the `noqueue` qdisc
(as OVS's internal devices and veth have): a TAP never stops its queue, so a
qdisc in front of it holds nothing, and under one each txqueuelen change
drops what is sent meanwhile (measured on Linux 6.18 under pfifo_fast, the
default: 3-47 frames at 10,000 frames/s per change; none under noqueue).
Moving a device to another namespace gives it the default qdisc again.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import socket
import struct
import time

import structlog

from .. import rtnl, vnet
from .base import NetdevError

log = structlog.get_logger("ovslite.netdev")

SIOCSIFHWADDR = 0x8924
SIOCGIFTXQLEN = 0x8942
SIOCSIFTXQLEN = 0x8943
ARPHRD_ETHER = 1
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUNGETIFF = 0x800454D2
TUNGETDEVNETNS = 0x54E3
IFF_TAP = 0x0002
IFF_MULTI_QUEUE = 0x0100
IFF_PERSIST = 0x0800
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
#: the flags open_tap gives, and IFF_MULTI_QUEUE which it does not
TAP_FLAGS = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
TAP_FLAGS_MASK = TAP_FLAGS | IFF_MULTI_QUEUE
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
#: a TAP's txqueuelen as ovslite makes it (kernels differ: 500 or 1000)
DEFAULT_TXQLEN = 1000
#: its length during a planned restart: 3.3 s at 10,000 frames/s (restarts
#: took 0.4-1.8 s on a busy 2-CPU VM; 8192 overflowed at 0.89 s, 16384 at
#: 1.81 s). The kernel holds 256 KB of pointers per TAP for it while it lasts,
#: and the frames queued meanwhile until the next instance reads them.
HANDOVER_TXQLEN = 32768
#: how long after re-attaching the restart's queue is kept at the least: a
#: new instance's first seconds are its slowest (modules loaded on first use,
#: caches filling), and a stall of 160 ms after a restart lost 618 frames
#: once the queue was back to 1000 (100 ms at 10,000 frames/s)
QUEUE_GRACE = 10.0
#: TCA_KIND of the qdisc a TAP ovslite makes gets, and where it goes (TC_H_ROOT)
QDISC = "noqueue"
TC_H_ROOT = 0xFFFFFFFF


def open_tap(name: str) -> int:
    """Attach to TAP `name` (created if absent, non-persistent); return a non-blocking fd."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise NetdevError(f"cannot open /dev/net/tun: {exc.strerror}", exc.errno) from None
    try:
        ifr = struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", vnet.VNET_HDR_LEN))
        fcntl.ioctl(fd, TUNSETOFFLOAD, OFFLOADS)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EBUSY, errno.EINVAL, errno.EPERM):
            raise NetdevError(
                f"cannot attach to {name}: it exists and is not a free TAP device ({exc.strerror})",
                exc.errno,
            ) from None
        raise NetdevError(f"cannot create TAP {name}: {exc.strerror}", exc.errno) from None
    return fd


def tap_info(fd: int) -> tuple[str, int]:
    """(device name, IFF_* flags) of the TAP `fd` is attached to; OSError if none.

    The name is the device's current one, in whatever namespace it now is.
    """
    ifr = fcntl.ioctl(fd, TUNGETIFF, bytes(40))
    raw, flags = struct.unpack_from("16sH", ifr)
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"), flags


def tap_netns_fd(fd: int) -> int | None:
    """An fd of the network namespace the TAP device of `fd` is in, or None
    if the kernel cannot say (TUNGETDEVNETNS: Linux 5.2)."""
    try:
        return fcntl.ioctl(fd, TUNGETDEVNETNS)
    except OSError:
        return None


def tap_netns(fd: int) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the network namespace the TAP device of `fd` is in, or None."""
    nsfd = tap_netns_fd(fd)
    if nsfd is None:
        return None
    try:
        st = os.fstat(nsfd)
        return st.st_dev, st.st_ino
    finally:
        os.close(nsfd)


def netns_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_tap(fd: int, name: str, netns: str | None = None) -> str | None:
    """Why handed-over `fd` is not our TAP `name` (in namespace file `netns`,
    if given and it still exists); None if it is. Makes it non-blocking."""
    try:
        got, flags = tap_info(fd)
    except OSError as exc:
        return f"not attached to a TAP ({exc.strerror})"
    if got != name:
        return f"it is TAP {got!r}, not {name!r}"
    if flags & TAP_FLAGS_MASK != TAP_FLAGS:
        return f"TAP flags {flags:#x}, not {TAP_FLAGS:#x}"
    if netns is not None:
        want, have = netns_id(netns), tap_netns(fd)
        if want is not None and have is not None and want != have:
            return f"{name} is not in network namespace {netns}"
    os.set_blocking(fd, False)
    return None


#: the initial network namespace's fixed inode number (include/linux/proc_ns.h)
PROC_NET_INIT_INO = 0xEFFFFFF9


def _namespace_seed() -> bytes:
    """Tells apart the network namespaces of one machine, which share /etc/machine-id
    (a daemon per namespace, as the multi-host tests and demos run): the namespace's
    inode, unless it is init's, so a host's MACs stay the same across reboots."""
    try:
        ours = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return b""
    if ours == PROC_NET_INIT_INO:
        return b""
    try:  # a container's own root namespace (pid 1 is the container's init)
        if os.stat("/proc/1/ns/net").st_ino == ours:
            return b""
    except OSError:  # pid 1's namespace may be hidden (sandboxes): then it is told by the inode
        pass
    return f"/netns/{ours}".encode()


def stable_mac(name: str) -> bytes:
    """A locally administered unicast MAC for device `name`, the same at every start.

    Derived from /etc/machine-id and the name, as systemd-networkd does for
    virtual devices: a restarted daemon recreates an internal port with the MAC
    its neighbours have cached, yet two hosts' `br0` differ, and so do the
    `br0`s of two daemons in two network namespaces of one machine (the bridge's
    spanning tree identity is this MAC: equal ones would make two bridges one).
    """
    try:
        with open("/etc/machine-id", "rb") as f:
            seed = f.read().strip()
    except OSError:
        seed = socket.gethostname().encode()
    seed += _namespace_seed()
    digest = bytearray(hashlib.sha256(seed + b"/ovslite/" + name.encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFE) | 0x02
    return bytes(digest)


def set_mac(fd: int, name: str, mac: bytes) -> None:
    fcntl.ioctl(fd, SIOCSIFHWADDR, struct.pack("16sH6s8x", name.encode(), ARPHRD_ETHER, mac))


def txqlen(name: str, value: int | None = None) -> int:
    """Set device `name`'s txqueuelen to `value` (if given); return it.

    In this thread's network namespace (see rtnl.run_in for another one).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if value is not None:
            fcntl.ioctl(sock, SIOCSIFTXQLEN, struct.pack("16si20x", name.encode(), value))
            return value
        ifr = fcntl.ioctl(sock, SIOCGIFTXQLEN, struct.pack("16si20x", name.encode(), 0))
        return struct.unpack_from("16si", ifr)[1]


def no_qdisc(ipr, index: int) -> None:
    """Give device `index` the noqueue qdisc (with `ipr`, an IPRoute); best while it is down."""
    ipr.tc("replace", kind=QDISC, index=index, handle=0, parent=TC_H_ROOT)


def set_persist(fd: int, persist: bool) -> None:
    fcntl.ioctl(fd, TUNSETPERSIST, int(persist))


def tap_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}/tun_flags")


class TapIO:
    """Batch read/write on a non-blocking TAP fd."""

    fd: int | None = None
    last_error = ""

    def fileno(self) -> int | None:
        return self.fd

    def recv_batch(self, limit: int) -> list:
        fd = self.fd
        if fd is None:
            return []
        read = os.read
        size = vnet.MAX_PACKET_LEN
        out = []
        append = out.append
        try:
            for _ in range(limit):
                append(read(fd, size))
        except BlockingIOError:
            pass
        except OSError as exc:  # EBADFD when the device was deleted under us
            self.last_error = exc.strerror or str(exc)
        return out

    def send_batch(self, packets: list) -> int:
        fd = self.fd
        if fd is None:
            return 0
        write = os.write
        sent = 0
        for pkt in packets:
            try:
                write(fd, pkt)
            except BlockingIOError:
                break
            except OSError as exc:  # EIO while the interface is administratively down
                self.last_error = exc.strerror or str(exc)
                continue
            sent += 1
        return sent

    def still_attached(self) -> bool:
        if self.fd is None:
            return False
        try:
            tap_info(self.fd)  # EBADFD once the device is deleted
        except OSError:
            return False
        return True

    def close_fd(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class RestartQueue:
    """A TAP queue long across a planned restart, short otherwise (see above).

    For netdevs with a TAP `fd` whose queue is ovslite's (`owns_queue()`).
    """

    fd: int | None = None
    name = ""
    resumed_at = 0.0

    def owns_queue(self) -> bool:
        return True

    def prepare_handover(self) -> None:
        if self.fd is not None and self.owns_queue():
            self.queue_length(HANDOVER_TXQLEN)

    def resume_queue(self) -> None:
        """After re-attaching: the usual length once the restart's backlog is read
        and QUEUE_GRACE has passed."""
        if self.owns_queue() and self.queue_length() == HANDOVER_TXQLEN:
            self.resumed_at = time.monotonic()
            self.recv_batch = self._drain_batch

    def _drain_batch(self, limit: int) -> list:
        out = TapIO.recv_batch(self, limit)
        if len(out) < limit and time.monotonic() - self.resumed_at >= QUEUE_GRACE:
            del self.recv_batch
            self.queue_length(DEFAULT_TXQLEN)
        return out

    def stop_draining(self) -> None:
        self.__dict__.pop("recv_batch", None)

    def queue_length(self, value: int | None = None) -> int | None:
        """Set the TAP's txqueuelen to `value`, or read it, wherever the device
        is now (TUNGETDEVNETNS); None if that fails."""
        nsfd = None
        try:
            name, _flags = tap_info(self.fd)
            nsfd = tap_netns_fd(self.fd)
            if nsfd is None:  # before Linux 5.2: where the daemon is
                return txqlen(name, value)
            return rtnl.run_in(f"/proc/self/fd/{nsfd}", lambda: txqlen(name, value))
        except Exception as exc:
            log.warning("cannot reach the TAP's queue length", port=self.name, error=str(exc))
            return None
        finally:
            if nsfd is not None:
                os.close(nsfd)
