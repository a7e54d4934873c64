"""Tunnel endpoints: the receive sockets tunnel ports share, and the demultiplexer.

The kernel does the outer headers both ways (docs/overlay-design.md (c), (d)):
one receive socket per (type, address family, UDP port) in the daemon's
namespace, shared by every tunnel port that uses it: a UDP socket bound to
`dst_port` (vxlan, geneve) or a raw IPPROTO_GRE socket (gre; raw IPv4 sockets
hand over the outer IPv4 header, which is skipped). A received packet is
parsed (ovslite.tunnel.headers) and dispatched by (remote address, key) to
its port; what matches no port is dropped and counted with the reason: on the
port that has that remote ("unknown-key", or the parser's reason for a
malformed packet), else on the endpoint ("unknown-remote"), which every port
using the endpoint shows. Inner frames reach the bridge as a received batch
of that port (Datapath.receive), like any port's, after consecutive TCP
segments of one flow are joined into GSO frames (ovslite.tunnel.gro); a port with several
remotes first learns which remote each source MAC is behind (TunnelNetdev.learn).

The endpoint watches its socket on the datapath's event loop itself (the
ports have no fd of their own), from the first port's `resolve`.

Restarts: every port using the endpoint hands its receive socket over
(TunnelNetdev.handover_fds), so datagrams queue in it while the next instance
starts; the first port to open adopts it again, the other copies are closed.

Limits: one datagram per recvfrom (no UDP_GRO yet), at most BATCH per wake-up
(so a joined frame holds at most BATCH segments).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import time

from ..netdev.base import NetdevError
from ..vnet import VIRTIO_NET_HDR_F_NEEDS_CSUM, VNET_HDR, ZERO_HDR
from .checksum import fold, pseudo_header_sum
from .gro import coalesce
from .headers import parse_geneve, parse_gre, parse_vxlan
from .segment import GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4

BATCH = 64
MAX_DATAGRAM = 65535
PARSERS = {"vxlan": parse_vxlan, "geneve": parse_geneve, "gre": parse_gre}
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
SO_RCVBUFFORCE, SO_SNDBUFFORCE = 33, 32
UDP_NO_CHECK6_RX = 102
#: socket buffers: a local kernel sender delivers whole 64 KB GSO datagrams, and a
#: GSO frame sent by a port is ~47 datagrams at once; the defaults (~208 KB) drop
SOCKET_BUFFER = 8 * 1024 * 1024
#: the receive socket's: what arrives while the daemon restarts waits in it, and a
#: small datagram takes ~770 bytes of it (skb truesize); 8 MB (16 MB as the kernel
#: counts) held 2 s at 10,000 frames/s and `systemctl restart` under load took
#: longer (4874 frames lost); 64 MB hold ~17 s, a `kill -9` and RestartSec= included
RECEIVE_BUFFER = 64 * 1024 * 1024

_ENDPOINTS: dict[tuple, Endpoint] = {}


def grow_buffers(sock: socket.socket, receive: int = SOCKET_BUFFER) -> None:
    for force, plain, size in ((SO_RCVBUFFORCE, socket.SO_RCVBUF, receive),
                               (SO_SNDBUFFORCE, socket.SO_SNDBUF, SOCKET_BUFFER)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except PermissionError:  # without CAP_NET_ADMIN: as large as net.core.*_max allows
            sock.setsockopt(socket.SOL_SOCKET, plain, size)
_L4_CSUM_OFFSET = {6: 16, 17: 6}  # TCP, UDP


def received_header(frame, mtu: int = 1500) -> bytes:
    """The vnet header for a decapsulated frame: NEEDS_CSUM when its TCP/UDP
    checksum field still holds the pseudo-header sum, else zeros.

    A sender on this host (a container behind the kernel's vxlan, over veth)
    leaves the inner checksum CHECKSUM_PARTIAL, and the UDP socket hands the
    bytes over unfinished (the metadata stays in the kernel). Marking such a
    frame NEEDS_CSUM lets the egress port's kernel finish it, as for any
    partial frame; a complete checksum that happens to equal that sum comes
    out the same when finished again, so the test cannot spoil a good frame.
    Such a sender's GSO frame also arrives whole (the veth carried the
    UDP-tunnel GSO packet unsegmented): a partial TCP or UDP frame above `mtu`
    (the port's inner MTU) gets a GSO header cutting it to that MTU, so the
    egress port's kernel segments it. Untagged IPv4 (not fragments) and IPv6
    without extension headers only.
    """
    size = len(frame)
    if size < 34:
        return ZERO_HDR
    ethertype = (frame[12] << 8) | frame[13]
    if ethertype == 0x0800:
        ihl = (frame[14] & 0x0F) * 4
        if ihl < 20 or (frame[20] & 0x3F) or frame[21]:  # bad, or a fragment (MF, offset)
            return ZERO_HDR
        proto = frame[23]
        l4 = 14 + ihl
        length = ((frame[16] << 8) | frame[17]) - ihl
        src, dst = frame[26:30], frame[30:34]
    elif ethertype == 0x86DD and size >= 54:
        proto = frame[20]
        l4 = 54
        length = (frame[18] << 8) | frame[19]
        src, dst = frame[22:38], frame[38:54]
    else:
        return ZERO_HDR
    offset = _L4_CSUM_OFFSET.get(proto)
    if offset is None or size < l4 + offset + 2 or length <= 0:
        return ZERO_HDR
    field = (frame[l4 + offset] << 8) | frame[l4 + offset + 1]
    if field != fold(pseudo_header_sum(src, dst, proto, length)):
        return ZERO_HDR
    if size - 14 <= mtu:
        return VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, l4, offset)
    l4_hlen = (frame[l4 + 12] >> 4) * 4 if proto == 6 else 8
    gso_size = mtu - (l4 - 14) - l4_hlen
    if l4_hlen < 8 or gso_size <= 0 or l4 + l4_hlen > size:
        return ZERO_HDR  # nonsense headers: passed on as they are, for the receiver to drop
    if proto == 6:
        gso_type = GSO_TCPV4 if ethertype == 0x0800 else GSO_TCPV6
    else:
        gso_type = GSO_UDP_L4
    return VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type, l4 + l4_hlen, gso_size, l4, offset)


def drop_all_filter(sock: socket.socket) -> None:
    """A socket filter that takes nothing: send-only sockets (a raw GRE socket
    would otherwise get a copy of every GRE packet to the host) queue nothing."""
    insn = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))  # BPF_RET|BPF_K 0
    prog = struct.pack("HL", 1, ctypes.addressof(insn))  # struct sock_fprog, native alignment
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)


class Endpoint:
    """One receive socket and the ports behind it, by (remote address text, key)."""

    def __init__(self, kind: str, family: int, udp_port: int | None, sock=None):
        self.kind = kind
        self.family = family
        self.udp_port = udp_port
        self.parse = PARSERS[kind]
        #: raw IPv4 sockets deliver the outer IPv4 header first
        self.skip_ip = kind == "gre" and family == socket.AF_INET
        self.ports: dict[tuple[str, int], object] = {}
        #: remote address -> the first port with it (where its unmatched packets are counted)
        self.by_remote: dict[str, object] = {}
        #: drops no port matched, by reason
        self.drops: dict[str, int] = {}
        self.users = 0
        self.datapath = None
        self.sock = sock if sock is not None else self._open()

    def _open(self) -> socket.socket:
        if self.kind == "gre":
            try:
                sock = socket.socket(self.family, socket.SOCK_RAW, socket.IPPROTO_GRE)
            except OSError as exc:
                raise NetdevError(f"gre: cannot open a raw GRE socket: {exc.strerror}",
                                  exc.errno or errno.EIO) from None
            sock.setblocking(False)
            grow_buffers(sock, RECEIVE_BUFFER)
            return sock
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        any_addr = "0.0.0.0"
        if self.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            # take a zero UDP checksum (RFC 6935: tunnels may send one; OVS accepts them)
            sock.setsockopt(socket.SOL_UDP, UDP_NO_CHECK6_RX, 1)
            any_addr = "::"
        try:
            sock.bind((any_addr, self.udp_port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise NetdevError(
                    f"{self.kind}: UDP port {self.udp_port} is already in use in this network "
                    "namespace (a kernel vxlan/geneve device or another program has it; "
                    "remove it or set dst_port)", exc.errno) from None
            raise NetdevError(f"{self.kind}: cannot bind UDP port {self.udp_port}: "
                              f"{exc.strerror}", exc.errno or errno.EIO) from None
        sock.setblocking(False)
        grow_buffers(sock, RECEIVE_BUFFER)
        return sock

    # -- ports -------------------------------------------------------------------
    def add(self, netdev, remotes: list[str], key: int) -> None:
        for remote in remotes:
            other = self.ports.get((remote, key))
            if other is not None and other is not netdev:
                raise NetdevError(f"port {other.name} already carries remote {remote} "
                                  f"key {key} ({self.kind})", errno.EEXIST)
        for remote in remotes:
            self.ports[(remote, key)] = netdev
            self.by_remote.setdefault(remote, netdev)

    def remove(self, netdev) -> None:
        for k in [k for k, v in self.ports.items() if v is netdev]:
            del self.ports[k]
        self.by_remote = {}
        for (remote, _), other in self.ports.items():
            self.by_remote.setdefault(remote, other)

    def attach(self, datapath) -> None:
        """Watch the socket on the datapath's loop (once)."""
        if self.datapath is None and self.sock is not None:
            datapath.loop.add_reader(self.sock.fileno(), self.on_readable)
            self.datapath = datapath

    def close(self) -> None:
        if self.sock is None:
            return
        if self.datapath is not None:
            self.datapath.loop.remove_reader(self.sock.fileno())
            self.datapath = None
        self.sock.close()
        self.sock = None

    # -- receive -----------------------------------------------------------------
    def classify(self, data: bytes, remote: str):
        """(port netdev, inner Ethernet frame), or (netdev or None, drop reason)."""
        offset = 0
        if self.skip_ip:
            if len(data) < 20:
                return None, "malformed"
            offset = (data[0] & 0x0F) * 4
        result = self.parse(memoryview(data)[offset:])
        if type(result) is str:
            return self.by_remote.get(remote), result
        key, inner, skipped = result
        netdev = self.ports.get((remote, key))
        if netdev is None:
            owner = self.by_remote.get(remote)
            return owner, "unknown-key" if owner is not None else "unknown-remote"
        if skipped:
            netdev.options_skipped += skipped
        return netdev, data[offset + inner:]

    def count(self, netdev, reason: str) -> None:
        drops = self.drops if netdev is None else netdev.rx_drops
        drops[reason] = drops.get(reason, 0) + 1

    def on_readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        groups: dict = {}
        now = time.monotonic()
        for _ in range(BATCH):
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # a queued ICMP error; the next read goes on
                continue
            netdev, result = self.classify(data, addr[0])
            if type(result) is str:
                self.count(netdev, result)
            elif netdev.port is None:
                self.count(netdev, "not-ready")
            else:
                if len(netdev.destinations) > 1:
                    netdev.learn(result, addr[0], now)
                packet = received_header(result, netdev.inner_mtu or 1500) + result
                batch = groups.get(netdev)
                if batch is None:
                    groups[netdev] = [packet]
                else:
                    batch.append(packet)
        datapath = self.datapath
        if datapath is not None:
            for netdev, packets in groups.items():
                datapath.receive(netdev.port, coalesce(packets) if len(packets) > 1 else packets)


def _adopt(kind: str, family: int, udp_port: int | None, fds: list[int]):
    """The receive socket among `fds` a previous instance handed over (the others
    are closed: copies of a socket already adopted, or not this endpoint's)."""
    found = None
    for fd in fds:
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            continue
        try:
            if kind == "gre":
                ours = sock.type == socket.SOCK_RAW and sock.proto == socket.IPPROTO_GRE
            else:
                ours = sock.type == socket.SOCK_DGRAM and sock.getsockname()[1] == udp_port
            ours = ours and sock.family == family
        except OSError:
            ours = False
        if ours and found is None:
            sock.setblocking(False)
            found = sock
        else:
            sock.close()
    return found


def acquire(kind: str, family: int, udp_port: int | None,
            inherited: list[int] | None = None) -> Endpoint:
    """The shared endpoint for (kind, family, udp_port), opened on first use, from
    a handed-over socket in `inherited` if there is one (restarts lose nothing)."""
    key = (kind, family, udp_port)
    endpoint = _ENDPOINTS.get(key)
    sock = _adopt(kind, family, udp_port, inherited) if inherited else None
    if endpoint is None:
        endpoint = _ENDPOINTS[key] = Endpoint(kind, family, udp_port, sock=sock)
    elif sock is not None:
        sock.close()  # a copy of the one the endpoint already has
    endpoint.users += 1
    return endpoint


def release(endpoint: Endpoint, netdev) -> None:
    endpoint.remove(netdev)
    endpoint.users -= 1
    if endpoint.users <= 0:
        endpoint.close()
        key = (endpoint.kind, endpoint.family, endpoint.udp_port)
        if _ENDPOINTS.get(key) is endpoint:
            del _ENDPOINTS[key]
