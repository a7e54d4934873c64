"""The logic of vxlan's kernel transmit device (ovslite/netdev/kvxlan.py) that
needs no kernel: its name, OVS options as device attributes, GSO sizes lowered
to the inner MTU, and the port sending every frame through its remote's device."""

import time

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from ovslite.netdev import kvxlan
from ovslite.netdev.vxlan import VxlanNetdev
from ovslite.tunnel.options import parse_options
from ovslite.tunnel.remotes import RemoteMap
from ovslite.vnet import VIRTIO_NET_HDR_F_NEEDS_CSUM, VNET_HDR, VNET_HDR_LEN, ZERO_HDR


def test_device_name_fits_ifnamsiz_and_differs_per_port_and_remote():
    names = {kvxlan.device_name(p, r) for p in ("t0", "t1") for r in ("192.168.50.2", "10.0.0.1")}
    assert len(names) == 4
    assert all(len(n) <= 15 and n.startswith("ovx") for n in names)
    assert kvxlan.device_name("t0", "192.168.50.2") == kvxlan.device_name("t0", "192.168.50.2")


def test_ovs_options_become_device_attributes():
    t = parse_options("vxlan", {"remote_ip": "192.168.50.2", "key": "100", "ttl": "9",
                                "tos": "16", "df_default": "false", "local_ip": "192.168.50.1"})
    attrs = kvxlan.device_attrs(t, 40000)
    assert attrs["vxlan_id"] == 100 and attrs["vxlan_port"] == 40000
    assert (attrs["vxlan_ttl"], attrs["vxlan_tos"], attrs["vxlan_df"]) == (9, 16, 0)
    assert attrs["vxlan_local"] == "192.168.50.1" and attrs["vxlan_learning"] == 0
    assert attrs["vxlan_udp_csum"] == 0  # OVS's default over IPv4: no outer checksum
    on = kvxlan.device_attrs(parse_options("vxlan", {"remote_ip": "192.168.50.2",
                                                     "csum": "true"}), 40000)
    assert on["vxlan_udp_csum"] == 1 and on["vxlan_df"] == 1 and "vxlan_local" not in on
    v6 = kvxlan.device_attrs(parse_options("vxlan", {"remote_ip": "fd00::2",
                                                     "local_ip": "fd00::1"}), 40000)
    assert v6["vxlan_local6"] == "fd00::1" and v6["vxlan_udp_zero_csum6_tx"] == 0


def gso_packet(inner, gso_type: int, gso_size: int) -> bytes:
    frame = bytes(inner)
    l4 = 14 + (20 if IP in inner else 40)
    offset = 16 if TCP in inner else 6
    return VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type, l4 + 32, gso_size, l4,
                         offset) + frame


@pytest.mark.parametrize(("inner", "gso_type", "l3l4"), [
    (Ether() / IP() / TCP(options=[("NOP", None)] * 12) / bytes(20000), kvxlan.GSO_TCPV4, 20 + 32),
    (Ether() / IPv6() / TCP() / bytes(20000), kvxlan.GSO_TCPV6, 40 + 20),
    (Ether() / IP() / UDP() / bytes(20000), kvxlan.GSO_UDP_L4, 20 + 8),
])
def test_gso_size_is_lowered_so_each_segment_fits_the_inner_mtu(inner, gso_type, l3l4):
    packet = gso_packet(inner, gso_type, 1448)
    lowered = kvxlan.lower_gso(packet, 1450)
    assert VNET_HDR.unpack_from(lowered)[3] == 1450 - l3l4
    assert bytes(lowered[VNET_HDR_LEN:]) == packet[VNET_HDR_LEN:]
    assert bytes(lowered[:4]) == packet[:4] and bytes(lowered[6:10]) == packet[6:10]


def test_fitting_and_non_gso_frames_are_left_alone():
    small = gso_packet(Ether() / IP() / TCP() / bytes(5000), kvxlan.GSO_TCPV4, 1000)
    assert kvxlan.lower_gso(small, 1450) is small
    plain = ZERO_HDR + bytes(Ether() / IP() / UDP())
    assert kvxlan.lower_gso(plain, 1450) is plain
    short = VNET_HDR.pack(1, kvxlan.GSO_TCPV4, 0, 9000, 60, 16) + bytes(40)  # csum_start past the end
    assert kvxlan.lower_gso(short, 1450) is short


class FakeDevice:
    def __init__(self, name):
        self.name = name
        self.sent = []

    def send_batch(self, packets):
        self.sent += [bytes(p) for p in packets]
        return len(packets)


def kernel_port(remotes):
    port = VxlanNetdev("t0", {"remote_ip": ",".join(remotes), "key": "100"})
    port.tunnel = parse_options("vxlan", port.config)
    port.remotes = remotes
    port.destinations = [(r, 4789) for r in remotes]
    port.destination_of = {r: [(r, 4789)] for r in remotes}
    port.inner_mtu = 1450
    port.remote_map = RemoteMap(remotes) if len(remotes) > 1 else None  # as open() makes it
    port.kernel_tx = {r: FakeDevice(kvxlan.device_name("t0", r)) for r in remotes}
    return port


def frame(dst: str, src: str) -> bytes:
    return ZERO_HDR + bytes(Ether(dst=dst, src=src) / IP() / UDP() / b"x")


def test_one_remote_every_frame_goes_to_its_device_gso_lowered():
    port = kernel_port(["192.168.50.2"])
    big = gso_packet(Ether() / IP() / TCP() / bytes(20000), kvxlan.GSO_TCPV4, 1448)
    assert port.send_batch([frame("ff:ff:ff:ff:ff:ff", "02:00:00:00:00:01"), big]) == 2
    (device,) = port.kernel_tx.values()
    assert len(device.sent) == 2 and VNET_HDR.unpack_from(device.sent[1])[3] == 1410
    assert "through kernel device ovx" in port.describe_output(big)


def test_several_remotes_flood_to_each_device_and_unicast_to_the_learned_one():
    b, c = "192.168.50.2", "192.168.50.3"
    port = kernel_port([b, c])
    port.learn(bytes(Ether(src="02:00:00:00:00:0b")), b, now=time.monotonic())
    port.send_batch([frame("ff:ff:ff:ff:ff:ff", "02:00:00:00:00:01"),
                     frame("02:00:00:00:00:0b", "02:00:00:00:00:01")])
    assert len(port.kernel_tx[b].sent) == 2 and len(port.kernel_tx[c].sent) == 1


class NoVxlanKernel(kvxlan.KernelVxlan):
    """A kernel without CONFIG_VXLAN: `link add ... vxlan` fails."""
    opened: list = []

    def open(self, tunnel):
        if self.remote == "192.168.50.3":
            raise OSError(95, "Operation not supported")
        NoVxlanKernel.opened.append(self)

    def close(self):
        NoVxlanKernel.opened.remove(self)


def test_without_a_kernel_vxlan_the_port_sends_from_python_and_says_why():
    tunnel = parse_options("vxlan", {"remote_ip": "192.168.50.2,192.168.50.3"})
    devices, why = NoVxlanKernel.open_all("t0", ["192.168.50.2", "192.168.50.3"], tunnel)
    assert devices == {} and "not supported" in why
    assert NoVxlanKernel.opened == []  # the one opened before the failure was closed
    v6 = parse_options("vxlan", {"remote_ip": "fd00::2"})
    assert kvxlan.KernelVxlan.open_all("t0", ["fd00::2"], v6) == (
        {}, "an IPv6 underlay needs local_ip for a kernel device")
