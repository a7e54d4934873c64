"""vxlan transmit through a kernel vxlan device that the port owns, send-only.

Python segmentation costs 330-480 µs per 64 KB GSO frame; a kernel vxlan
device takes the same frame through AF_PACKET for ~13 µs and does the outer
headers, segmentation (or hands the UDP-tunnel GSO packet on whole), inner
and outer checksums, the per-flow source port, routing and neighbour
resolution (docs/overlay-design.md (e), (h)). So a vxlan port sends every
frame, small or GSO, through one such device per remote (`ovx` + a hash of
port and remote): one path, so a flow's frames keep their order. Small frames
go through the PACKET_MMAP tx ring (one syscall per batch), GSO frames
whole with their vnet header (pktring.RingIO).

The device is only a sender. ovslite's receive socket holds `dst_port`, so
the device listens on a private port (free when it is made) and its one fdb
entry (00:00:00:00:00:00 dst REMOTE port DST_PORT) sends to the remote's
`dst_port`. What reaches it anyway is dropped at its ingress (a 2-instruction
eBPF program in a cls_bpf filter); IPv6 is off on it, so it sends nothing of
its own (no router or neighbour solicitations to the remote). `nolearning`.
OVS options map onto it: local_ip, ttl, tos, df_default, csum (outer UDP
checksum).

GSO frames get their gso_size lowered to the port's inner MTU (the vnet
header is rewritten) so the outer packets fit the path; non-GSO frames above
it are dropped as `too-big` before they get here (TunnelNetdev.resolve).

Lifecycle: made at open, deleted at close (del-port, stop). A device of the
same name left by a previous instance (kill -9, restart in place) is deleted
first, so after a restart one exists. Nothing of it needs handing over: the
receive socket is the endpoint's, and no frame waits in a sender.

Limits: IPv4 remotes, and IPv6 ones only with local_ip (the device must know
its family); a kernel without CONFIG_VXLAN (or no CAP_NET_ADMIN) makes `open`
raise, and the port sends from Python (TunnelNetdev).
"""

from __future__ import annotations

import ctypes
import os
import platform
import socket
import struct
import zlib

import structlog

from .. import rtnl
from ..vnet import ETH_HLEN, VNET_HDR, VNET_HDR_LEN
from .packetsock import _packet_socket
from .pktring import RingIO, setup_rings

log = structlog.get_logger("ovslite.netdev")

PREFIX = "ovx"
#: the device's own MTU: frames are limited by the port's inner MTU (max_len) instead
DEVICE_MTU = 65000
GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_UDP_L4, GSO_ECN = 1, 3, 4, 5, 0x80
_GSO_SIZE = struct.Struct("=H")


def device_name(port: str, remote: str) -> str:
    return f"{PREFIX}{zlib.crc32(f'{port}|{remote}'.encode()):08x}"


def device_attrs(tunnel, private_port: int) -> dict:
    """pyroute2 `link add` arguments for the device of a port with `tunnel`'s options."""
    attrs = {"kind": "vxlan", "vxlan_id": tunnel.key, "vxlan_port": private_port,
             "vxlan_learning": 0, "vxlan_ttl": tunnel.ttl, "vxlan_tos": tunnel.tos or 0,
             "vxlan_df": 1 if tunnel.df_default else 0, "mtu": DEVICE_MTU}
    if tunnel.ipv6:
        attrs["vxlan_udp_zero_csum6_tx"] = 0 if tunnel.csum else 1
        if tunnel.local_ip is not None:
            attrs["vxlan_local6"] = str(tunnel.local_ip)
    else:
        attrs["vxlan_udp_csum"] = 1 if tunnel.csum else 0
        if tunnel.local_ip is not None:
            attrs["vxlan_local"] = str(tunnel.local_ip)
    return attrs


def lower_gso(packet, inner_mtu: int):
    """`packet` (vnet header + frame) with its gso_size cut so that each segment
    fits `inner_mtu` (bytes of IP and above); unchanged if it is not GSO, fits,
    or has headers that make no sense (the kernel then refuses or checks it)."""
    gso_type = packet[1] & ~GSO_ECN
    if not gso_type:
        return packet
    _flags, _type, _hdr_len, gso_size, csum_start, _off = VNET_HDR.unpack_from(packet)
    l4 = VNET_HDR_LEN + csum_start
    if gso_type in (GSO_TCPV4, GSO_TCPV6):
        if len(packet) <= l4 + 12:
            return packet
        l4_hlen = (packet[l4 + 12] >> 4) * 4
    elif gso_type in (GSO_UDP_L4, GSO_UDP):
        l4_hlen = 8
    else:
        return packet
    room = inner_mtu - (csum_start - ETH_HLEN) - l4_hlen
    if room <= 0 or gso_size <= room:
        return packet
    out = bytearray(packet)
    _GSO_SIZE.pack_into(out, 4, room)
    return out


# -- the ingress drop: an eBPF program `return TC_ACT_SHOT` in a cls_bpf filter ----------
_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351,
                "riscv64": 280}
BPF_PROG_LOAD = 5
BPF_PROG_TYPE_SCHED_CLS = 3
#: r0 = 2 (TC_ACT_SHOT); exit
_DROP_PROGRAM = struct.pack("=BBhi", 0xB7, 0, 0, 2) + struct.pack("=BBhi", 0x95, 0, 0, 0)
_libc = ctypes.CDLL(None, use_errno=True)


def load_drop_program() -> int:
    """A file descriptor of a loaded eBPF tc program that drops everything."""
    number = _BPF_SYSCALL.get(platform.machine())
    if number is None:
        raise OSError(0, f"bpf(): syscall number unknown on {platform.machine()}")
    insns = ctypes.create_string_buffer(_DROP_PROGRAM)
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(struct.pack(
        "=IIQQ", BPF_PROG_TYPE_SCHED_CLS, 2, ctypes.addressof(insns),
        ctypes.addressof(license_)), 128)
    fd = _libc.syscall(number, BPF_PROG_LOAD, attr, 128)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf(BPF_PROG_LOAD): {os.strerror(err)}")
    return fd


def _free_udp_port(family: int) -> int:
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        return probe.getsockname()[1]


def delete_device(name: str) -> None:
    def delete(ipr):
        found = ipr.link_lookup(ifname=name)
        if found:
            ipr.link("del", index=found[0])

    rtnl.call(delete)


def create_device(name: str, tunnel, remote: str, dst_port: int) -> int:
    """Make (anew) the send-only device `name` towards `remote`:`dst_port`; its ifindex."""
    family = socket.AF_INET6 if tunnel.ipv6 else socket.AF_INET
    attrs = device_attrs(tunnel, _free_udp_port(family))
    drop_fd = load_drop_program()

    def make(ipr):
        found = ipr.link_lookup(ifname=name)
        if found:  # a previous instance's (kill -9, restart in place)
            ipr.link("del", index=found[0])
        ipr.link("add", ifname=name, **attrs)
        (index,) = ipr.link_lookup(ifname=name)
        try:
            with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
                f.write("1")
        except FileNotFoundError:
            pass  # no IPv6 in this kernel: nothing to switch off
        with open(f"/proc/sys/net/ipv4/conf/{name}/arp_ignore", "w") as f:
            f.write("8")
        ipr.tc("add", "ingress", index, "ffff:")
        ipr.tc("add-filter", "bpf", index, ":1", fd=drop_fd, name="ovslite-drop",
               parent="ffff:", direct_action=True)
        ipr.fdb("append", ifindex=index, lladdr="00:00:00:00:00:00", dst=remote,
                port=dst_port)
        ipr.link("set", index=index, state="up")
        return index

    try:
        return rtnl.call(make)
    except BaseException:
        try:
            delete_device(name)
        except Exception:  # noqa: BLE001 - already failing; the first error says why
            pass
        raise
    finally:
        os.close(drop_fd)


class KernelVxlan(RingIO):
    """One send-only kernel vxlan device towards one remote, written through rings."""

    def __init__(self, port: str, remote: str, dst_port: int):
        self.name = device_name(port, remote)
        self.remote = remote
        self.dst_port = dst_port
        self.ifindex = 0

    @classmethod
    def open_all(cls, port: str, remotes: list[str], tunnel) -> tuple[dict, str]:
        """({remote: open device}, "") for a port, or ({}, why not): then the
        port sends from Python."""
        if tunnel.ipv6 and tunnel.local_ip is None:
            return {}, "an IPv6 underlay needs local_ip for a kernel device"
        devices: dict = {}
        try:
            for remote in remotes:
                device = cls(port, remote, tunnel.dst_port)
                device.open(tunnel)
                devices[remote] = device
        except Exception as exc:  # noqa: BLE001 - pyroute2 and bpf() raise many kinds
            for device in devices.values():
                device.close()
            why = str(exc) or type(exc).__name__
            log.warning("no kernel transmit device: sending from Python", port=port, error=why)
            return {}, why
        return devices, ""

    def open(self, tunnel) -> None:
        self.ifindex = create_device(self.name, tunnel, self.remote, self.dst_port)
        try:
            self.sock = _packet_socket(self.name, 0)  # protocol 0: receives nothing
            self.ring = setup_rings(self.sock)
            self.sock.bind((self.name, 0))
            self.tx_sock = _packet_socket(self.name, 0)
            self.tx_sock.bind((self.name, 0))
            self._reset_rings()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.close_rings()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.ifindex:
            self.ifindex = 0
            try:
                delete_device(self.name)
            except Exception as exc:  # noqa: BLE001 - close must not fail; say what is left
                log.warning("cannot delete kernel vxlan device", device=self.name, error=str(exc))
