"""Hosts in network namespaces, bridged by ovslite through `system` ports."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from .daemon import Daemon, fdb_entries, port_stats
from .netns import Host, Network, wait_for, why_unusable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]


def bridged_hosts(daemon: Daemon, net: Network, n: int) -> tuple[str, list[Host]]:
    """A bridge with `n` hosts on it, each behind its own system port."""
    br = net.name("br")
    daemon.ctl("add-br", br)
    hosts = [net.add_host(f"h{i}") for i in range(1, n + 1)]
    for h in hosts:
        daemon.ctl("add-port", br, h.port)
    return br, hosts


def test_two_hosts_ping(daemon, net):
    _, (h1, h2) = bridged_hosts(daemon, net, 2)
    h1.ping(h2, count=3, wait=2)
    h2.ping(h1, count=3, wait=2)


def test_unknown_unicast_floods_then_learned_traffic_does_not(daemon, net):
    br, (h1, h2, h3) = bridged_hosts(daemon, net, 3)
    # Static ARP both ways, so the first frame h1 sends is a unicast to h2's
    # MAC, which the switch has never seen.
    h1.set_neighbor(h2)
    h2.set_neighbor(h1)

    cap = h3.capture(f"icmp and dst host {h2.ip}", count=1, timeout=10)
    h1.ping(h2, count=1, wait=3)
    rc, seen = cap.result()
    assert rc == 0 and "ICMP echo request" in seen, (
        f"unicast to a not-yet-learned MAC was not flooded to h3 "
        f"(tcpdump exit {rc}, output {seen!r})")

    # Both MACs are learned now (the request taught h1, the reply h2).
    h1.ping(h2, count=2, wait=2, interval=0.05)
    port_before = port_stats(daemon, br)[h3.port]["tx_packets"]
    kernel_before = h3.stat("rx_packets")
    h1.ping(h2, count=50, wait=2, interval=0.01)
    port_delta = port_stats(daemon, br)[h3.port]["tx_packets"] - port_before
    kernel_delta = h3.stat("rx_packets") - kernel_before
    print(f"h3 during 50 learned pings: port tx +{port_delta}, kernel rx +{kernel_delta}")
    assert port_delta <= 2, f"h3's port sent {port_delta} frames during h1<->h2 unicast"
    assert kernel_delta <= 2, f"h3 received {kernel_delta} frames during h1<->h2 unicast"


def test_fdb_show_lists_learned_macs(daemon, net):
    br, (h1, h2) = bridged_hosts(daemon, net, 2)
    h1.ping(h2, count=1, wait=2)
    fdb = fdb_entries(daemon, br)
    assert fdb.get(h1.mac) == h1.port, f"h1 {h1.mac} not on {h1.port}: {fdb}"
    assert fdb.get(h2.mac) == h2.port, f"h2 {h2.mac} not on {h2.port}: {fdb}"
    # The text form shows the same, one entry per line.
    text = daemon.ctl("fdb-show", br).stdout
    for h in (h1, h2):
        assert any(h.mac in line.lower() and h.port in line for line in text.splitlines()), (
            f"text fdb-show lacks {h.mac} on {h.port}:\n{text}")


def test_iperf3_tcp_with_default_offloads(daemon, net):
    br, (h1, h2) = bridged_hosts(daemon, net, 2)
    h1.ping(h2, count=1, wait=2)
    rx_before = port_stats(daemon, br)[h1.port]["rx_bytes"]
    port = "5201"
    h2.popen("iperf3", "-s", "-1", "-B", h2.ip, "-p", port)
    wait_for(lambda: f"{h2.ip}:{port}" in h2.run("ss", "-Hltn").stdout,
             timeout=10, what="iperf3 server to listen")
    try:
        proc = h1.run("iperf3", "-c", h2.ip, "-p", port, "-t", "3", "-J",
                      "--connect-timeout", "5000", check=False, timeout=40)
    except subprocess.TimeoutExpired:
        pytest.fail("iperf3 client did not finish within 40s")
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"iperf3 exit {proc.returncode}, no JSON: {proc.stdout!r} {proc.stderr!r}")
    assert "error" not in result, f"iperf3 failed: {result['error']}"
    received = result["end"]["sum_received"]["bits_per_second"]
    sent = result["end"]["sum_sent"]
    print(f"iperf3 TCP h1->h2 through ovslite: {received / 1e9:.2f} Gbit/s received, "
          f"{sent.get('retransmits', '?')} retransmits")
    assert received >= 1e9, f"only {received / 1e9:.3f} Gbit/s through the switch"
    # The bytes really crossed the switch: h1's port received at least the payload.
    crossed = port_stats(daemon, br)[h1.port]["rx_bytes"] - rx_before
    assert crossed >= sent["bytes"], (
        f"h1's port received {crossed} bytes but iperf3 sent {sent['bytes']}")


def test_del_port_cuts_a_host_off_and_add_port_brings_it_back(daemon, net):
    br, (h1, h2) = bridged_hosts(daemon, net, 2)
    h1.ping(h2)
    daemon.ctl("del-port", br, h2.port)
    assert h2.port not in daemon.ctl("list-ports", br).stdout.split()
    assert h1.ping(h2, count=2, wait=1, check=False).returncode != 0, "h2 still reachable"
    daemon.ctl("add-port", br, h2.port)
    h1.ping(h2)


def test_interface_vanishing_under_a_port(daemon, net):
    """Deleting a port's interface while traffic flows must not take the daemon down."""
    br, (h1, h2, h3) = bridged_hosts(daemon, net, 3)
    h1.ping(h3, count=1)
    pinger = h1.popen("ping", "-n", "-q", "-i", "0.01", "-c", "200", "-w", "3", h2.ip)
    time.sleep(0.5)
    net.links.remove(h2.port)
    subprocess.run(["ip", "link", "del", h2.port], check=True, timeout=10)
    pinger.wait(15)
    assert daemon.running, "the daemon died when a port's interface was deleted"
    busy = daemon.cpu_seconds(over=1.0)
    assert busy < 0.5, f"the daemon spins after losing an interface: {busy:.2f}s CPU in 1s"
    h1.ping(h3)  # the rest of the bridge still forwards
    ports = {p["name"]: p for b in daemon.ctl_json("show")["bridges"] for p in b["ports"]}
    assert h2.port in ports  # still configured, as after a restart
    print(f"{h2.port} after its interface was deleted: up={ports[h2.port]['up']} "
          f"reason={ports[h2.port]['reason']!r}")
    daemon.ctl("del-port", br, h2.port)
    unrelated = [r for r in daemon.errors_logged() if h2.port not in json.dumps(r)]
    assert not unrelated, f"errors logged about other things: {unrelated}"


def test_deleted_interface_shows_port_down_and_comes_back(daemon, net):
    br, (h1, h2) = bridged_hosts(daemon, net, 2)
    net.links.remove(h2.port)
    subprocess.run(["ip", "link", "del", h2.port], check=True, timeout=10)

    def h2_state():
        ports = {p["name"]: p for b in daemon.ctl_json("show")["bridges"] for p in b["ports"]}
        return not ports[h2.port]["up"] and ports[h2.port]

    wait_for(h2_state, timeout=3, interval=0.2, what=f"{h2.port} to show down")
    assert "removed" in h2_state()["reason"]

    # The interface comes back (a new veth, its peer up for carrier): the port reopens by itself.
    peer = h2.port[:-1] + "z"
    net.links.append(h2.port)
    subprocess.run(["ip", "link", "add", h2.port, "type", "veth", "peer", "name", peer],
                   check=True, timeout=10)
    subprocess.run(["ip", "link", "set", peer, "up"], check=True, timeout=10)

    def port_of_h2():
        ports = {p["name"]: p for b in daemon.ctl_json("show")["bridges"] for p in b["ports"]}
        return ports[h2.port]

    wait_for(lambda: port_of_h2()["up"], timeout=3, interval=0.2, what=f"{h2.port} to come back up")
    # Someone sets it administratively down: the port follows, with the reason.
    subprocess.run(["ip", "link", "set", h2.port, "down"], check=True, timeout=10)
    wait_for(lambda: not port_of_h2()["up"], timeout=3, interval=0.2, what=f"{h2.port} to go down")
    assert port_of_h2()["reason"] == "interface is down"
