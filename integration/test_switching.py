"""Per-port switching settings on real namespaces: storm control, isolated ports,
learning off, admin state, MTU (system and patch ports) and the port following
its interface's link state.

Settings are applied with `ovslite-ctl set-port` when it exists, else through
the database and SIGHUP (see test_vlan.set_ports).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from .daemon import Daemon, fdb_entries, port_stats
from .netns import Host, Network, run, wait_for, why_unusable
from .test_vlan import add_bridge, add_patch_pair, port_state, set_port, set_ports, unreachable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]

#: broadcasts of a local experimental EtherType (no host stack answers them)
FLOOD = """
import socket, sys, time
ifname, mac, seconds = sys.argv[1:]
frame = b"\\xff" * 6 + bytes.fromhex(mac.replace(":", "")) + b"\\x88\\xb5" + bytes(46)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
n, end = 0, time.monotonic() + float(seconds)
while time.monotonic() < end:
    for _ in range(100):
        try:
            s.send(frame)
            n += 1
        except OSError:
            pass
print(n)
"""


def hosts_on_bridge(d: Daemon, net: Network, n: int) -> tuple[str, list[Host]]:
    hosts = [net.add_host(f"h{i}", i) for i in range(1, n + 1)]
    return add_bridge(d, net, "br", hosts), hosts


def ping_big(src: Host, dst: Host, size: int) -> subprocess.CompletedProcess:
    """Pings of `size` payload bytes that may not be fragmented (DF)."""
    return src.run("ping", "-n", "-q", "-M", "do", "-s", str(size), "-c", "2", "-i", "0.3",
                   "-W", "1", dst.ip, check=False, timeout=20)


def kernel_mtu(dev: str) -> int:
    return json.loads(run(["ip", "-j", "link", "show", "dev", dev]).stdout)[0]["mtu"]


def state_is(d: Daemon, port: str, up: bool) -> dict | None:
    st = port_state(d, port)
    return st if st["up"] == up else None


# -- storm control ------------------------------------------------------------------------


def test_storm_control_limits_a_broadcast_flood_and_unicast_keeps_working(daemon, net):
    br, (h1, h2, h3) = hosts_on_bridge(daemon, net, 3)
    set_port(daemon, h1.port, storm_control=1000)
    h2.ping(h3)
    rx_before = h2.stat("rx_packets")
    start = time.monotonic()
    flood = h1.popen(sys.executable, "-c", FLOOD, h1.ifname, h1.mac, "4",
                     stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    pings = h2.ping(h3, count=15, interval=0.2, wait=2, check=False)
    out, _ = flood.communicate(timeout=30)
    elapsed = time.monotonic() - start
    rx = h2.stat("rx_packets") - rx_before
    h1_stats = port_stats(daemon, br)[h1.port]
    drops = h1_stats["drops"]
    loss = int(re.search(r"(\d+)% packet loss", pings.stdout).group(1))
    print(f"flood: {int(out)} frames in {elapsed:.1f}s; h2 received {rx}; h1 port drops {drops}; "
          f"h2->h3 ping loss {loss}%")
    assert int(out) > 2000 * elapsed, f"the flood was too slow to test anything: {out}"
    assert loss <= 20, f"unicast suffered under a rate-limited flood:\n{pings.stdout}"
    # 1000 a second plus one second's burst (and the pings) may pass; the rest is dropped.
    allowed = 1000 * (elapsed + 1) * 1.1 + 100
    assert rx <= allowed, f"h2 received {rx} frames in {elapsed:.1f}s"
    assert drops.get("storm-control", 0) >= h1_stats["rx_packets"] - allowed, h1_stats
    text = daemon.ctl("dump-ports", br).stdout
    assert "storm-control=" in text, text


# -- isolated ports -------------------------------------------------------------------------


def test_isolated_ports_reach_only_non_isolated_ones(daemon, net):
    _, (h1, h2, h3) = hosts_on_bridge(daemon, net, 3)
    set_ports(daemon, {h1.port: {"isolated": "on"}, h2.port: {"isolated": "on"}})
    h1.ping(h3)
    h2.ping(h3)
    h3.ping(h1)
    # Known unicast too: static ARP, and both MACs learned by the pings above.
    h1.set_neighbor(h2)
    h2.set_neighbor(h1)
    assert unreachable(h1, h2), "isolated h1 reached isolated h2"
    assert unreachable(h2, h1), "isolated h2 reached isolated h1"
    set_port(daemon, h2.port, isolated="off")
    h1.ping(h2)


# -- learning off -----------------------------------------------------------------------------


def test_learning_off_keeps_the_host_out_of_the_fdb_and_traffic_flows_by_flooding(daemon, net):
    br, (h1, h2, h3) = hosts_on_bridge(daemon, net, 3)
    set_port(daemon, h1.port, learning="off")
    h1.ping(h2)
    fdb = fdb_entries(daemon, br)
    assert h1.mac not in fdb, f"{h1.mac} learned on a learning=off port: {fdb}"
    assert fdb.get(h2.mac) == h2.port, fdb
    # h1's MAC stays unknown, so h2's replies are flooded, h3 included.
    cap = h3.capture(f"icmp and src host {h2.ip}", count=1, timeout=10)
    h1.ping(h2, count=1)
    rc, out = cap.result()
    assert rc == 0 and "ICMP echo reply" in out, f"h2's reply to h1 was not flooded: {out!r}"
    assert h1.mac not in fdb_entries(daemon, br)


# -- admin state ------------------------------------------------------------------------------


def test_admin_down_cuts_a_host_off_and_admin_up_restores_it(daemon, net):
    br, (h1, h2) = hosts_on_bridge(daemon, net, 2)
    h1.ping(h2)
    set_port(daemon, h2.port, admin="down")
    st = port_state(daemon, h2.port)
    assert not st["up"] and st["reason"] == "administratively down", st
    assert "down (administratively down)" in daemon.ctl("show").stdout
    assert unreachable(h1, h2), "h2 reachable through an admin-down port"
    assert unreachable(h2, h1), "h2 reached h1 through an admin-down port"
    assert port_stats(daemon, br)[h2.port]["drops"].get("port-down", 0) > 0
    set_port(daemon, h2.port, admin="up")
    assert port_state(daemon, h2.port)["up"]
    h1.ping(h2)
    h2.ping(h1)


def test_admin_down_patch_port_takes_its_peer_down(daemon, net):
    h1, h2 = net.add_host("h1", 1), net.add_host("h2", 2)
    bra = add_bridge(daemon, net, "bra", [h1])
    brb = add_bridge(daemon, net, "brb", [h2])
    pa, pb = add_patch_pair(daemon, net, bra, brb)
    h1.ping(h2)
    set_port(daemon, pb, admin="down")
    assert port_state(daemon, pb)["reason"] == "administratively down"
    st = port_state(daemon, pa)
    assert not st["up"] and st["reason"] == f"peer {pb} is administratively down", st
    assert unreachable(h1, h2), "h2 reachable through an admin-down patch cable"
    set_port(daemon, pb, admin="up")
    wait_for(lambda: state_is(daemon, pa, True), timeout=5, what=f"{pa} up")
    h1.ping(h2)


# -- MTU ----------------------------------------------------------------------------------------


def test_mtu_on_a_system_port_sets_the_device_and_drops_bigger_frames(daemon, net):
    br, (h1, h2) = hosts_on_bridge(daemon, net, 2)
    h1.ping(h2)
    set_port(daemon, h2.port, mtu=1400)
    assert kernel_mtu(h2.port) == 1400
    assert ping_big(h1, h2, 1472).returncode != 0, "1500-byte packets crossed a 1400 MTU port"
    assert port_stats(daemon, br)[h2.port]["drops"].get("mtu", 0) >= 2
    assert ping_big(h1, h2, 1372).returncode == 0, "1400-byte packets did not pass"
    h1.ping(h2)


def test_mtu_is_applied_again_when_the_device_comes_back(daemon, net):
    br, (h1, h2) = hosts_on_bridge(daemon, net, 2)
    set_port(daemon, h2.port, mtu=1400)
    assert kernel_mtu(h2.port) == 1400
    # The interface goes away and a new one of the same name appears (its peer up).
    net.links.remove(h2.port)
    run(["ip", "link", "del", h2.port])
    wait_for(lambda: state_is(daemon, h2.port, False), timeout=5, what=f"{h2.port} down")
    net.links.append(h2.port)
    run(["ip", "link", "add", h2.port, "type", "veth", "peer", "name", net.name("z")])
    run(["ip", "link", "set", net.name("z"), "up"])
    wait_for(lambda: state_is(daemon, h2.port, True), timeout=5, what=f"{h2.port} back up")
    assert kernel_mtu(h2.port) == 1400, (
        f"{h2.port} came back with MTU {kernel_mtu(h2.port)}, not its setting 1400")


def test_mtu_on_a_patch_port_drops_and_counts_bigger_frames(daemon, net):
    h1, h2 = net.add_host("h1", 1), net.add_host("h2", 2)
    bra = add_bridge(daemon, net, "bra", [h1])
    brb = add_bridge(daemon, net, "brb", [h2])
    pa, pb = add_patch_pair(daemon, net, bra, brb)
    h1.ping(h2)
    set_port(daemon, pa, mtu=1400)
    assert ping_big(h1, h2, 1472).returncode != 0, "1500-byte packets crossed a 1400 MTU patch"
    stats = port_stats(daemon, bra)[pa]
    assert stats["drops"].get("mtu", 0) >= 2 and stats["tx_dropped"] >= 2, stats
    assert ping_big(h1, h2, 1372).returncode == 0, "1400-byte packets did not cross the patch"
    h1.ping(h2)
    assert port_stats(daemon, bra)[pa]["drops"]["mtu"] == stats["drops"]["mtu"]


# -- link state -----------------------------------------------------------------------------------


def test_port_follows_its_interface_going_down_and_up(daemon, net):
    br, (h1, h2) = hosts_on_bridge(daemon, net, 2)
    h1.ping(h2)
    run(["ip", "link", "set", h2.port, "down"])
    st = wait_for(lambda: state_is(daemon, h2.port, False), timeout=5, what=f"{h2.port} down")
    assert st["reason"] == "interface is down", st
    assert "down (interface is down)" in daemon.ctl("show").stdout
    assert unreachable(h1, h2)
    rx_before = port_stats(daemon, br)[h2.port]["rx_packets"]
    run(["ip", "link", "set", h2.port, "up"])
    wait_for(lambda: state_is(daemon, h2.port, True), timeout=5, what=f"{h2.port} up")
    pings = h1.ping(h2, check=False)
    stats = port_stats(daemon, br)[h2.port]
    assert pings.returncode == 0, (
        f"{h2.port} shows up again but h1 cannot reach h2; the port received "
        f"{stats['rx_packets'] - rx_before} frames since (stats {stats}):\n{pings.stdout}")
    h2.ping(h1)
