"""Tunnel ports (vxlan, geneve, gre): the provider logic the three types share.

Each type's module (vxlan.py, geneve.py, gre.py) only names its header. A port
is one (type, remote(s), key) with OVS's options (ovslite.tunnel.options,
checked whole by `check_options` before anything is applied). The kernel does
the outer headers, routing and neighbour resolution: frames go out through
this port's own send sockets (UDP for vxlan/geneve, a raw IPPROTO_GRE socket
for gre) and come in through a receive socket shared per (type, family,
UDP port) (ovslite.tunnel.endpoint), so the first frames are never dropped
while an ARP resolves.

Send: GSO frames are segmented to the inner MTU and partial checksums
finished in software (ovslite.tunnel.segment), then each frame is sent to
every remote (head-end replication). The UDP socket is picked from a small
pool by a hash of the inner flow, so flows get distinct outer source ports
(underlay ECMP/RSS) while one flow keeps its port. Non-GSO frames above the
inner MTU never get here: `resolve` sets the Port's max_len so the datapath
drops them as `too-big`. Outer UDP checksum as OVS defaults it (zero over IPv4
unless csum=true: SO_NO_CHECK; over IPv6 on unless csum=false: UDP_NO_CHECK6_TX,
as RFC 6935 allows tunnels).

State: up while every remote has a route (checked at open, on every
configuration change and on route/address events: Switch.routes_changed),
else down with "no route to X"; the inner MTU is the
smallest path MTU (the route's mtu metric, else its device's MTU) minus the
type's overhead.

The datagrams of a GSO frame go out in UDP_SEGMENT calls when the outer
checksum is on (csum=true: the kernel refuses UDP GSO without it), else one
sendto each (~7 µs per datagram).

A port with several remotes learns which remote each inner source MAC came
from (ovslite.tunnel.remotes: bounded, aged like the bridge's default 300 s):
known unicast goes to that remote only, the rest to every remote. A MAC can
be pinned to a remote (`fdb-add BR MAC PORT --remote IP`: the switch hands
the port its pins, `pin`); a pin wins over what is learned. Such a port also
counts frames and inner bytes per remote (`remote_stats`, shown by dump-ports).

Restarts: the shared receive socket is handed over (handover_fds), so what
arrives meanwhile waits in it; send sockets are made afresh.

Limits (next steps): no UDP_GRO reads; per-remote tx counts frames handed
to the send path (a send that fails is counted on the port as tx-failed).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
import zlib
from typing import ClassVar

from .. import rtnl
from ..tunnel import endpoint as endpoints
from ..tunnel.headers import flow_key
from ..tunnel.options import KNOWN_OPTIONS, TunnelOptions, parse_options
from ..tunnel.remotes import RemoteMap
from ..tunnel.segment import wire_frames
from ..vnet import ETH_HLEN, VNET_HDR_LEN
from .base import LinkStatus, Netdev, NetdevError

#: UDP send sockets per port: distinct outer source ports for distinct flows
SEND_SOCKETS = 4
SO_NO_CHECK = 11
UDP_NO_CHECK6_TX = 101
UDP_SEGMENT = 103
UDP_MAX_SEGMENTS = 64  # the kernel's limit is 128 here; older kernels have 64
UDP_MAX_PAYLOAD = 65507
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_DONT, IP_PMTUDISC_DO = 0, 2


def send_segmented(sock: socket.socket, datagrams: list[bytes], destination) -> None:
    """Send equal-sized datagrams (the last may be shorter) with few UDP_SEGMENT
    calls: one call is one UDP datagram of at most 65,507 bytes and 128 segments
    on this kernel (docs/overlay-design.md (a))."""
    size = len(datagrams[0])
    per_call = max(1, min(UDP_MAX_SEGMENTS, UDP_MAX_PAYLOAD // size))
    cmsg = [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("H", size))]
    for start in range(0, len(datagrams), per_call):
        chunk = datagrams[start:start + per_call]
        if len(chunk) == 1:
            sock.sendto(chunk[0], destination)
        else:
            sock.sendmsg([b"".join(chunk)], cmsg, 0, destination)


def route_mtu(remote: str) -> int | None:
    """The path MTU towards `remote` by the routing table, None if unroutable."""
    from pyroute2.netlink.exceptions import NetlinkError

    def lookup(ipr):
        try:
            routes = ipr.route("get", dst=remote)
        except NetlinkError:
            return None
        if not routes:
            return None
        route = routes[0]
        if route["type"] != 1:  # RTN_UNICAST (blackhole, unreachable, prohibit: no path)
            return 65536 if route["type"] == 2 else None  # RTN_LOCAL: loopback
        metrics = route.get_attr("RTA_METRICS")
        mtu = metrics.get_attr("RTAX_MTU") if metrics is not None else None
        if mtu:
            return int(mtu)
        oif = route.get_attr("RTA_OIF")
        links = ipr.get_links(oif) if oif else []
        return int(links[0].get_attr("IFLA_MTU")) if links else None

    return rtnl.call(lookup)


class TunnelNetdev(Netdev):
    options = KNOWN_OPTIONS
    #: the bridge never sends a frame from one tunnel port out of another (ovslite.bridge)
    split_horizon = True
    #: a stored copy of the receive socket keeps its UDP port bound: del-port waits
    #: until systemd has dropped it, so the port can be bound again at once
    fds_hold_device = True
    #: replaced in unit tests: remote address text -> path MTU or None
    route_lookup: ClassVar = staticmethod(route_mtu)

    @classmethod
    def check_options(cls, name: str, options: dict) -> None:
        super().check_options(name, options)
        if parse_options(cls.type, options).tos is None:
            # one socket option per port, not per frame: the inner TOS cannot be copied
            raise ValueError("tos: 'inherit' is not supported by ovslite yet (give 0-252)")

    def __init__(self, name: str, options: dict[str, str] | None = None):
        super().__init__(name, options)
        self.tunnel: TunnelOptions | None = None
        self.endpoint: endpoints.Endpoint | None = None
        self.send_socks: list[socket.socket] = []
        self.remotes: list[str] = []
        self.destinations: list[tuple] = []
        self.destination_of: dict[str, list[tuple]] = {}
        #: ports with several remotes: which remote each inner MAC is behind, counters
        self.remote_map: RemoteMap | None = None
        #: the bridge Port, from resolve(); received frames are delivered as its
        self.port = None
        self.rx_drops: dict[str, int] = {}
        self.options_skipped = 0
        self.inner_mtu: int | None = None
        self.header = b""
        #: send a GSO frame's datagrams with UDP_SEGMENT: needs the outer UDP
        #: checksum on (the kernel refuses UDP GSO on an SO_NO_CHECK socket)
        self.udp_segment = False
        self._reason = "not open"

    # -- the type's part ----------------------------------------------------------
    def make_header(self, tunnel: TunnelOptions) -> bytes:
        """The tunnel header every frame of this port gets (same for all frames)."""
        raise NotImplementedError

    def encapsulate(self, packet) -> list[bytes]:
        """The datagrams (tunnel header + finished inner frame) for one packet.
        ValueError for a GSO frame that cannot be segmented."""
        return wire_frames(packet, self.inner_mtu, self.header)

    # -- lifecycle ----------------------------------------------------------------
    def open(self, inherited: list[int] | None = None) -> None:
        try:
            tunnel = self.tunnel = parse_options(self.type, self.config)
        except ValueError as exc:
            for fd in inherited or ():
                os.close(fd)
            raise NetdevError(str(exc), errno.EINVAL) from None
        family = socket.AF_INET6 if tunnel.ipv6 else socket.AF_INET
        self.remotes = [str(r) for r in tunnel.remote_ips]
        self.destinations = [(r, tunnel.dst_port or 0) for r in self.remotes]
        self.destination_of = {d[0]: [d] for d in self.destinations}
        self.remote_map = RemoteMap(self.remotes) if len(self.remotes) > 1 else None
        self.header = self.make_header(tunnel)
        self.udp_segment = self.type != "gre" and tunnel.csum
        self.endpoint = endpoints.acquire(self.type, family, tunnel.dst_port, inherited)
        try:
            self.endpoint.add(self, self.remotes, tunnel.key)
            self.send_socks = self._open_send_sockets(tunnel, family)
        except BaseException:
            self.close()
            raise
        self._check_routes()

    def _open_send_sockets(self, tunnel: TunnelOptions, family: int) -> list[socket.socket]:
        socks: list[socket.socket] = []
        try:
            for _ in range(1 if self.type == "gre" else SEND_SOCKETS):
                if self.type == "gre":
                    sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_GRE)
                else:
                    sock = socket.socket(family, socket.SOCK_DGRAM)
                socks.append(sock)
                endpoints.drop_all_filter(sock)
                if tunnel.local_ip is not None:
                    sock.bind((str(tunnel.local_ip), 0))
                if family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, tunnel.ttl)
                    if tunnel.tos is not None:
                        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tunnel.tos)
                    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER,
                                    IP_PMTUDISC_DO if tunnel.df_default else IP_PMTUDISC_DONT)
                    if self.type != "gre" and not tunnel.csum:
                        sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, tunnel.ttl)
                    if tunnel.tos is not None:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tunnel.tos)
                    if self.type != "gre" and not tunnel.csum:  # csum=false: zero, RFC 6935
                        sock.setsockopt(socket.SOL_UDP, UDP_NO_CHECK6_TX, 1)
                sock.setblocking(False)
                endpoints.grow_buffers(sock)
        except OSError as exc:
            for sock in socks:
                sock.close()
            what = f"local_ip {tunnel.local_ip}" if tunnel.local_ip is not None else "socket"
            raise NetdevError(f"{self.type} port {self.name}: cannot set up its {what}: "
                              f"{exc.strerror or exc}", exc.errno or errno.EIO) from None
        return socks

    def close(self) -> None:
        for sock in self.send_socks:
            sock.close()
        self.send_socks = []
        if self.endpoint is not None:
            endpoints.release(self.endpoint, self)
            self.endpoint = None
        self.port = None
        self._reason = "not open"

    def _check_routes(self) -> None:
        mtus = []
        for remote in self.remotes:
            mtu = self.route_lookup(remote)
            if mtu is None:
                self._reason = f"no route to {remote}"
                return
            mtus.append(mtu)
        self.inner_mtu = self.tunnel.inner_mtu(min(mtus))
        self._reason = "" if self.inner_mtu >= 68 else (
            f"path MTU {min(mtus)} leaves no room for frames ({self.tunnel.overhead} bytes of overhead)")

    def resolve(self, port, ports: dict, datapath) -> None:
        if self.endpoint is None:
            return
        self.port = port
        self.endpoint.attach(datapath)
        self._check_routes()
        port.oversize_reason = "too-big"
        limit = None if self.inner_mtu is None else self.inner_mtu + VNET_HDR_LEN + ETH_HLEN
        mtu = port.settings.get("mtu")  # set-port mtu=N, as Port.configure reads it
        if mtu:
            by_setting = mtu + VNET_HDR_LEN + ETH_HLEN + 4
            limit = by_setting if limit is None else min(limit, by_setting)
        port.max_len = limit

    def handover_fds(self) -> list[int]:
        """The shared receive socket (each port using it passes a copy): what
        arrives during a restart waits in it. Send sockets are made afresh."""
        endpoint = self.endpoint
        return [endpoint.sock.fileno()] if endpoint is not None and endpoint.sock else []

    # -- dataplane -----------------------------------------------------------------
    def fileno(self) -> int | None:
        return None  # the shared endpoint watches the receive socket

    def recv_batch(self, limit: int) -> list:
        return []

    def learn(self, frame, remote: str, now: float) -> None:
        """A frame from `remote` (a port with several remotes): its source MAC is
        behind that remote (ovslite.tunnel.remotes)."""
        if self.remote_map is not None:
            self.remote_map.learn(bytes(frame[6:12]), remote, len(frame), now)

    def remote_of(self, mac: bytes, now: float) -> str | None:
        """The remote known unicast to `mac` goes to (pinned or learned); None:
        every remote, or a port with one remote."""
        return self.remote_map.remote_of(mac, now) if self.remote_map is not None else None

    def pin(self, pins: dict[bytes, str]) -> None:
        """The MACs fdb-add pinned to a remote of this port (replaces the previous ones)."""
        if self.remote_map is not None:
            self.remote_map.pin(pins)

    def _destinations_for(self, packet, now: float, count: bool = True) -> list[tuple]:
        """Known unicast to the one remote its MAC is behind, else all; counted
        per remote unless `count` is off (trace)."""
        destinations = self.destinations
        remotes = self.remote_map
        if remotes is None:
            return destinations
        if not packet[VNET_HDR_LEN] & 1:  # a group address: head-end replication
            remote = remotes.remote_of(bytes(packet[VNET_HDR_LEN:VNET_HDR_LEN + 6]), now)
            if remote is not None:
                destinations = self.destination_of[remote]
        if count:
            remotes.sent(destinations, len(packet) - VNET_HDR_LEN)
        return destinations

    def remote_stats(self) -> dict[str, dict[str, int]]:
        """Per remote of a port with several: rx/tx packets and (inner) bytes."""
        return self.remote_map.stats() if self.remote_map is not None else {}

    def send_batch(self, packets: list) -> int:
        socks = self.send_socks
        if not socks:
            return 0
        destinations = self.destinations
        learned = len(destinations) > 1
        now = time.monotonic() if learned else 0.0
        n_socks = len(socks)
        batched = self.udp_segment
        accepted = 0
        for packet in packets:
            try:
                datagrams = self.encapsulate(packet)
            except ValueError:
                continue  # counted by the datapath as tx-failed
            sock = socks[zlib.crc32(flow_key(packet, VNET_HDR_LEN)) % n_socks] if n_socks > 1 \
                else socks[0]
            sent_all = True
            if learned:
                destinations = self._destinations_for(packet, now)
            for destination in destinations:  # head-end replication
                try:
                    if batched and len(datagrams) > 1:
                        send_segmented(sock, datagrams, destination)
                    else:
                        for datagram in datagrams:
                            sock.sendto(datagram, destination)
                except OSError:  # buffer full (EAGAIN), no route...: tx-failed
                    sent_all = False
            accepted += sent_all
        return accepted

    def describe_output(self, packet) -> str:
        """For `trace`: the encapsulation `packet` would get, and where it would go."""
        tunnel = self.tunnel
        if tunnel is None:
            return "not open"
        destinations = self.destinations
        if len(destinations) > 1:
            destinations = self._destinations_for(packet, time.monotonic(), count=False)
        where = ", ".join(f"{ip}:{port}" if port else ip for ip, port in destinations)
        if self.type == "gre":
            key = f"key {tunnel.key}" if tunnel.key_present else "no key"
            outer = f"IPv{6 if tunnel.ipv6 else 4} + GRE"
        else:
            key = f"VNI {tunnel.key}"
            outer = f"IPv{6 if tunnel.ipv6 else 4} + UDP (source port by flow) + {self.type}"
        return (f"{self.type} {key} to {where}: {outer}, +{tunnel.overhead - ETH_HLEN} bytes, "
                f"ttl {tunnel.ttl}, tos {tunnel.tos}, {'DF' if tunnel.df_default else 'no DF'}, "
                f"{'outer checksum' if tunnel.csum else 'no outer checksum'}")

    # -- state ---------------------------------------------------------------------
    def status(self) -> LinkStatus:
        return LinkStatus(not self._reason, self._reason)

    def drops(self) -> dict[str, int]:
        return dict(self.rx_drops)

    def info(self) -> dict[str, str]:
        tunnel = self.tunnel
        if tunnel is None:
            return {}
        info = {"remote_ip": ",".join(self.remotes) or ",".join(map(str, tunnel.remote_ips)),
                "key": str(tunnel.key),
                "inner_mtu": str(self.inner_mtu) if self.inner_mtu is not None else "unknown"}
        if tunnel.dst_port is not None:
            info["dst_port"] = str(tunnel.dst_port)
        if tunnel.local_ip is not None:
            info["local_ip"] = str(tunnel.local_ip)
        if self.options_skipped:
            info["geneve_options_skipped"] = str(self.options_skipped)
        unmatched = self.endpoint.drops if self.endpoint is not None else {}
        if unmatched:  # packets to this socket that matched no port at all
            info["unmatched"] = ",".join(f"{k}={v}" for k, v in sorted(unmatched.items()))
        return info
