"""vxlan's kernel transmit device (ovslite/netdev/kvxlan.py) on real namespaces:
GSO frames cross whole to a kernel vxlan peer, the device has the port's
options and sends to the remote's dst_port, what reaches its private port is
dropped, and it lives exactly as long as the port (del-port, SIGTERM + start,
kill -9 + start). Hosts and helpers as in test_tunnel.py."""

from __future__ import annotations

import json
import time

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from ovslite.tunnel.headers import vxlan_header

from .netns import wait_for, why_unusable
from .test_tunnel import (
    kernel_vxlan,
    offloads_on,
    port_info,
    start_ovslite,
    tcp_bytes,
    two_hosts,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]


def kernel_devices(host) -> list[dict]:
    """ovslite's transmit devices in `host`'s namespace (`ip -d -j link`)."""
    links = json.loads(host.h("ip", "-d", "-j", "link", "show", "type", "vxlan").stdout)
    return [x for x in links if x["ifname"].startswith("ovx")]


def rx_packets(host, dev: str) -> int:
    return int(host.h("cat", f"/sys/class/net/{dev}/statistics/rx_packets").stdout)


def test_gso_frames_cross_whole_through_the_kernel_device_to_a_kernel_vxlan(net, make_daemon):
    a, b = two_hosts(net)
    kernel_vxlan(b, a)
    d = start_ovslite(make_daemon, a, "vxlan", b, "key=100", "ttl=33")
    (dev,) = kernel_devices(a)
    data = dev["linkinfo"]["info_data"]
    assert data["id"] == 100 and data["ttl"] == 33 and not data.get("learning")
    assert data["port"] != 4789  # ovslite's receive socket holds 4789
    fdb = a.h("bridge", "fdb", "show", "dev", dev["ifname"]).stdout
    assert f"00:00:00:00:00:00 dst {b.underlay_ip} port 4789" in fdb, fdb
    assert port_info(d, "t0")["tunnel"]["transmit"] == f"kernel {dev['ifname']}"
    assert a.ping(b).returncode == 0
    offloads_on(a)
    before = rx_packets(b, "vxk")
    moved = tcp_bytes(a, b)
    received = rx_packets(b, "vxk") - before
    assert moved > 1_000_000
    # 64 KB frames arrived as such (the veth carries the UDP-tunnel GSO packet),
    # not as ~1.4 KB segments made in Python
    assert received < moved / 5000, (received, moved)


def test_what_reaches_the_private_port_is_dropped(net, make_daemon):
    a, b = two_hosts(net)
    start_ovslite(make_daemon, a, "vxlan", b, "key=100")
    (dev,) = kernel_devices(a)
    port, mac = dev["linkinfo"]["info_data"]["port"], dev["address"]
    assert "bpf" in a.h("tc", "filter", "show", "dev", dev["ifname"], "ingress").stdout

    def echo_requests_taken() -> int:
        out = a.h("nstat", "-az", "IcmpInEchos").stdout.split()
        return int(out[out.index("IcmpInEchos") + 1])

    # from b: a VXLAN packet to the device's private port, with an ICMP echo to a's
    # underlay address inside, sent to the device's own MAC
    inner = bytes(Ether(dst=mac, src="02:00:00:00:00:99") / IP(src="10.9.9.9", dst=a.underlay_ip)
                  / ICMP())
    script = (f"import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
              f"[s.sendto(bytes.fromhex('{(vxlan_header(100) + inner).hex()}'),"
              f"('{a.underlay_ip}',{port})) for _ in range(5)]")
    before_echo = echo_requests_taken()
    before_rx = rx_packets(a, dev["ifname"])
    b.h("python3", "-c", script)
    time.sleep(0.5)
    assert rx_packets(a, dev["ifname"]) >= before_rx + 5  # they did reach the device
    assert echo_requests_taken() == before_echo  # and went no further


def test_the_device_lives_as_long_as_the_port(net, make_daemon):
    a, b = two_hosts(net)
    d = start_ovslite(make_daemon, a, "vxlan", b, "key=100")
    start_ovslite(make_daemon, b, "vxlan", a, "key=100")
    (first,) = kernel_devices(a)
    d.restart()  # SIGTERM, start again from the database
    wait_for(lambda: port_info(d, "t0")["up"], what="t0 open again")
    assert len(kernel_devices(a)) == 1
    d.proc.kill()  # kill -9: the device stays behind ...
    d.proc.wait(10)
    assert len(kernel_devices(a)) == 1
    d.start()  # ... and the next instance replaces it
    wait_for(lambda: port_info(d, "t0")["up"], what="t0 open again")
    (again,) = kernel_devices(a)
    assert again["ifname"] == first["ifname"]
    assert a.ping(b).returncode == 0
    d.ctl("del-port", "br-tun", "t0")
    assert kernel_devices(a) == []
