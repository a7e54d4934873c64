"""`capture --outer`: a tunnel port's encapsulated packets, as they are on the underlay.

The datapath never sees the outer headers (the kernel adds and strips them,
and may transmit through a kernel device of its own), so they are read where
tcpdump would read them: an AF_PACKET socket on each underlay interface the
routing table uses towards the port's remotes, with a classic BPF filter that
takes only the tunnel's packets (its IP version and protocol, its UDP
destination port for vxlan/geneve, from or to one of its remotes; first
fragments only). The sockets exist for the capture's duration only and feed
the capture's bounded queue (ovslite.capture) as a port tap does; what the
reader cannot keep up with is dropped from the capture, never from the
dataplane. Direction: "out" for what this host sends (PACKET_OUTGOING), "in"
for the rest.

Limits: the interfaces are those the routes use when the capture starts;
packets of another tunnel port with the same protocol, UDP port and remote
(another key) are shown too; IPv6 outer headers with extension headers are
not matched; the underlay must be an Ethernet (or loopback) interface. As
with tcpdump, a GSO packet the kernel has not segmented yet is shown whole.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import socket
import struct

from .. import rtnl
from ..vnet import ZERO_HDR

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
#: packets read per wake-up, so a busy underlay cannot hold the event loop
BATCH = 64
SNAPLEN = 65535

# classic BPF opcodes (linux/filter.h)
LD_W_ABS, LD_H_ABS, LD_B_ABS, LD_H_IND = 0x20, 0x28, 0x30, 0x48
LDX_B_MSH = 0xB1
JEQ_K, JSET_K = 0x15, 0x45
RET_K = 0x06
PROTOCOLS = {"vxlan": socket.IPPROTO_UDP, "geneve": socket.IPPROTO_UDP, "gre": socket.IPPROTO_GRE}


class OuterError(Exception):
    """No outer capture possible: errno + one line."""

    def __init__(self, err: int, message: str):
        super().__init__(message)
        self.errno = err


def bpf_program(kind: str, udp_port: int | None, remotes: list[str]) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions: the tunnel's packets to or from
    one of `remotes` (one address family)."""
    addresses = [ipaddress.ip_address(r) for r in remotes]
    v6 = addresses[0].version == 6
    # (code, true label, false label, k); a None label: the next instruction
    asm: list[tuple] = [(LD_H_ABS, None, None, 12),
                        (JEQ_K, None, "drop", 0x86DD if v6 else 0x0800),
                        (LD_B_ABS, None, None, 20 if v6 else 23),
                        (JEQ_K, None, "drop", PROTOCOLS[kind])]
    if udp_port is not None:
        if v6:
            asm += [(LD_H_ABS, None, None, 14 + 40 + 2)]
        else:
            asm += [(LD_H_ABS, None, None, 20), (JSET_K, "drop", None, 0x1FFF),  # a later fragment
                    (LDX_B_MSH, None, None, 14), (LD_H_IND, None, None, 14 + 2)]
        asm += [(JEQ_K, None, "drop", udp_port)]
    source, destination = (22, 38) if v6 else (26, 30)
    n = 0
    for where in (source, destination):
        for address in addresses:
            words = struct.unpack(f"!{len(address.packed) // 4}I", address.packed)
            n += 1
            for i, word in enumerate(words):
                asm.append((LD_W_ABS, None, None, where + 4 * i))
                last = i == len(words) - 1
                asm.append((JEQ_K, "take" if last else None, f"next{n}", word))
            asm.append(("label", f"next{n}"))
    asm += [("label", "drop"), (RET_K, None, None, 0), ("label", "take"), (RET_K, None, None, SNAPLEN)]
    labels, program = {}, []
    for item in asm:
        if item[0] == "label":
            labels[item[1]] = len(program)
        else:
            program.append(item)
    out = []
    for index, (code, jt, jf, k) in enumerate(program):
        def offset(label, index=index):
            return 0 if label is None else labels[label] - index - 1
        out.append((code, offset(jt), offset(jf), k))
    return out


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    insns = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in program))
    fprog = struct.pack("HL", len(program), ctypes.addressof(insns))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def underlay_interfaces(remotes: list[str]) -> dict[int, str]:
    """ifindex -> name of the interfaces the routes to `remotes` leave by.
    OuterError if a remote has no route or an interface is not Ethernet."""
    from pyroute2.netlink.exceptions import NetlinkError

    def lookup(ipr):
        found = {}
        for remote in remotes:
            try:
                routes = ipr.route("get", dst=remote)
            except NetlinkError:
                routes = []
            oif = routes[0].get_attr("RTA_OIF") if routes else None
            if not oif:
                raise OuterError(errno.EHOSTUNREACH, f"no route to {remote}: no underlay to capture on")
            link = ipr.get_links(oif)[0]
            name = link.get_attr("IFLA_IFNAME")
            if link["ifi_type"] not in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
                raise OuterError(errno.EOPNOTSUPP, f"the underlay interface {name} towards {remote} "
                                 "is not an Ethernet interface")
            found[oif] = name
        return found

    return rtnl.call(lookup)


class OuterTap:
    """The AF_PACKET sockets of one outer capture, feeding `capture` (a Capture)."""

    def __init__(self, netdev, capture, loop):
        tunnel = netdev.tunnel
        if tunnel is None or not netdev.remotes:
            raise OuterError(errno.ENETDOWN, f"port {netdev.name} is not open: nothing to capture")
        self.capture = capture
        self.loop = loop
        self.socks: list[socket.socket] = []
        program = bpf_program(netdev.type, tunnel.dst_port, netdev.remotes)
        self.interfaces = underlay_interfaces(netdev.remotes)
        try:
            for name in self.interfaces.values():
                # protocol 0: no packet is queued before the filter is on and bind names one
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                self.socks.append(sock)
                attach_filter(sock, program)
                sock.bind((name, ETH_P_ALL))
                sock.setblocking(False)
                loop.add_reader(sock.fileno(), self._readable, sock)
        except OSError as exc:
            self.close()
            raise OuterError(exc.errno or errno.EIO,
                             f"cannot capture on the underlay: {exc.strerror or exc}") from None

    def _readable(self, sock: socket.socket) -> None:
        capture = self.capture
        for _ in range(BATCH):
            try:
                data, address = sock.recvfrom(SNAPLEN)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            capture("out" if address[2] == PACKET_OUTGOING else "in", [ZERO_HDR + data])

    def close(self) -> None:
        for sock in self.socks:
            try:
                self.loop.remove_reader(sock.fileno())
            except (ValueError, OSError):
                pass
            sock.close()
        self.socks = []
