"""Tunnel ports between three ovslite hosts on one underlay bridge: a port with
two remotes (flooding, learning), a full mesh (split horizon). Hosts and helpers
as in test_tunnel.py."""

from __future__ import annotations

import time

import pytest

from .daemon import Daemon, port_stats
from .netns import Network, run, why_unusable
from .test_tunnel import SimHost, start_ovslite

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]


def three_hosts(net: Network) -> tuple[SimHost, SimHost, SimHost]:
    """Hosts a, b, c (192.168.50.1-3) on one underlay: a Linux bridge in its own namespace."""
    uns = net.add_namespace("u")
    run(["ip", "-n", uns, "link", "add", "ubr", "type", "bridge"])
    run(["ip", "-n", uns, "link", "set", "ubr", "up"])
    hosts = []
    for index, role in enumerate(("a", "b", "c"), start=1):
        ifname = net.name(f"u{role}")
        host = SimHost(net, role, index, ifname)
        run(["ip", "link", "add", ifname, "netns", host.ns, "type", "veth",
             "peer", "name", f"up{role}", "netns", uns])
        run(["ip", "-n", uns, "link", "set", f"up{role}", "master", "ubr", "up"])
        host.h("ip", "addr", "add", f"{host.underlay_ip}/24", "dev", ifname)
        host.h("ip", "link", "set", ifname, "up")
        hosts.append(host)
    return tuple(hosts)


def port_rx(d: Daemon, name: str) -> int:
    return port_stats(d, "br-tun")[name]["rx_packets"]


def hub_with_two_remotes(make_daemon, a: SimHost, b: SimHost, c: SimHost):
    """a's port t0 has remotes b and c; b and c each have a port to a. The daemons."""
    d_a = make_daemon("ovslited-a", netns=a.ns)
    d_a.ctl("add-br", "br-tun")
    d_a.ctl("add-port", "br-tun", a.cport)
    d_a.ctl("add-port", "br-tun", "t0", "--type", "vxlan", "-o",
            f"remote_ip={b.underlay_ip},{c.underlay_ip}", "-o", "key=100")
    return (d_a, start_ovslite(make_daemon, b, "vxlan", a, "key=100"),
            start_ovslite(make_daemon, c, "vxlan", a, "key=100"))


def test_port_with_two_remotes_floods_to_both_and_learns_unicast(net, make_daemon):
    a, b, c = three_hosts(net)
    d_a, d_b, d_c = hub_with_two_remotes(make_daemon, a, b, c)
    assert a.ping(b).returncode == 0
    assert a.ping(c).returncode == 0
    assert b.ping(a).returncode == 0
    assert "tunnel: {dst_port=4789, inner_mtu=1450, key=100, " \
           f"remote_ip={b.underlay_ip},{c.underlay_ip}}}" in d_a.ctl("show").stdout
    # a's ARP broadcast for b reached c too; now b's MAC is known behind b's address
    c_before, b_before = port_rx(d_c, "t0"), port_rx(d_b, "t0")
    assert a.ping(b, count=5).returncode == 0
    assert port_rx(d_c, "t0") == c_before  # no copy of a's unicast to b went to c
    assert port_rx(d_b, "t0") >= b_before + 5


def send_broadcast(host: SimHost) -> None:
    """One Ethernet broadcast (local experimental EtherType 0x88B5) from the container."""
    script = ("import socket;s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW);"
              "s.bind(('eth0',0));"
              "s.send(b'\\xff'*6+bytes.fromhex('02000000aa01')+b'\\x88\\xb5'+bytes(46))")
    host.c("python3", "-c", script)


def container_rx(host: SimHost) -> int:
    return int(host.c("cat", "/sys/class/net/eth0/statistics/rx_packets").stdout)


def test_full_mesh_of_three_delivers_one_broadcast_once_and_has_no_loop(net, make_daemon):
    hosts = three_hosts(net)
    daemons = {}
    for host in hosts:
        d = daemons[host.role] = make_daemon(f"ovslited-{host.role}", netns=host.ns)
        d.ctl("add-br", "br-tun")
        d.ctl("add-port", "br-tun", host.cport)
        for other in hosts:
            if other is not host:  # one port per remote: a loop without split horizon
                d.ctl("add-port", "br-tun", f"t{other.role}", "--type", "vxlan", "-o",
                      f"remote_ip={other.underlay_ip}", "-o", "key=100")
    a, b, c = hosts
    for x, y in ((a, b), (a, c), (b, c)):
        assert x.ping(y).returncode == 0
    macs = {h.role: h.c("cat", "/sys/class/net/eth0/address").stdout.strip() for h in hosts}
    for x in hosts:  # no ARP refreshes during the quiet periods below
        for y in hosts:
            if x is not y:
                x.c("ip", "neigh", "replace", y.container_ip, "lladdr", macs[y.role],
                    "dev", "eth0", "nud", "permanent")
    before = {h.role: container_rx(h) for h in hosts}
    send_broadcast(a)
    time.sleep(1)
    assert container_rx(b) - before["b"] == 1
    assert container_rx(c) - before["c"] == 1
    assert container_rx(a) == before["a"]
    # idle: nothing keeps circulating between the hosts
    counts = {r: port_stats(d, "br-tun") for r, d in daemons.items()}
    time.sleep(3)
    assert {r: port_stats(d, "br-tun") for r, d in daemons.items()} == counts
