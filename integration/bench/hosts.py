"""Bench hosts: a network namespace with one veth end in it, the other end a switch port.

Design: the root-namespace end (`Host.port`) is what a switch under test
attaches; it gets no address and no IPv6, so the only traffic on it is what
the bench sends between its own 10.x hosts. Offloads stay at the kernel's
defaults (no ethtool), as the brief requires: the TCP figures therefore
include whatever GSO/GRO the switch can carry.

Counters are read from sysfs inside the namespace (`ip netns exec` remounts
/sys there), the way a person would look at `ip -s link` on the host.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field

from .resources import Resources, run

SUBNET = "10.99.0"


def disable_ipv6(ifname: str) -> None:
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
            f.write("1")
    except OSError:
        pass  # IPv6 compiled out: nothing to disable


def set_up(ifname: str) -> None:
    run(["ip", "link", "set", ifname, "up"])


@dataclass
class Host:
    res: Resources = field(repr=False)
    role: str
    ns: str
    ifname: str  # inside the namespace
    port: str  # root-namespace end, to attach to a switch
    ip: str
    mac: str = ""

    def cmd(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *args]

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return run(self.cmd(*args), check=check, timeout=timeout)

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return self.res.popen(self.cmd(*args), **kw)

    def counters(self, *names: str) -> list[int]:
        """Kernel interface counters (e.g. rx_packets), read in one exec."""
        paths = [f"/sys/class/net/{self.ifname}/statistics/{n}" for n in names]
        out = self.run("cat", *paths).stdout.split()
        return [int(v) for v in out]

    def ping(self, dst: str, count: int = 1, timeout: float = 2) -> bool:
        return self.run("ping", "-n", "-q", "-c", str(count), "-W", str(timeout), "-i", "0.2",
                        dst, check=False, timeout=count * (timeout + 1) + 5).returncode == 0


def make_host(res: Resources, role: str, index: int) -> Host:
    """Namespace `role` with veth <port>i at 10.99.0.<index>/24, the root end <port> left down."""
    ns = res.add_namespace(role)
    port = res.link_name(role)
    inner = f"{port}i"
    res.add_link(port, ["type", "veth", "peer", "name", inner, "netns", ns])
    disable_ipv6(port)
    ip = f"{SUBNET}.{index}"
    run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", inner])
    run(["ip", "-n", ns, "link", "set", inner, "up"])
    mac = run(["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{inner}/address"]).stdout.strip()
    return Host(res, role, ns, inner, port, ip, mac.lower())


def make_pair(res: Resources, role: str) -> tuple[str, str]:
    """A root-namespace veth pair <role>a/<role>b, both up, IPv6 off (joins two bridges)."""
    a, b = res.link_name(f"{role}a"), res.link_name(f"{role}b")
    res.add_link(a, ["type", "veth", "peer", "name", b])
    res.links.append(b)
    for end in (a, b):
        disable_ipv6(end)
        set_up(end)
    return a, b


def make_idle_ports(res: Resources, count: int, prefix: str = "") -> list[str]:
    """`count` veth ports whose far ends sit, up and silent, in one shared '<prefix>idle' namespace.

    One namespace for all of them keeps 62 extra ports cheap to build; an idle
    host sends nothing (IPv6 off, no address), which is all the port-count
    scaling case needs from it.
    """
    if count <= 0:
        return []
    ns = res.add_namespace(f"{prefix}idle")
    ports = []
    for i in range(count):
        port = res.link_name(f"{prefix}x{i}")
        res.add_link(port, ["type", "veth", "peer", "name", f"{port}i", "netns", ns])
        disable_ipv6(port)
        run(["ip", "-n", ns, "link", "set", f"{port}i", "up"])
        ports.append(port)
    return ports


def pair_hosts(res: Resources, prefix: str = "") -> tuple[Host, Host]:
    """h1 and h2; a `prefix` on their roles (hence namespace and link names) lets several
    topologies stand side by side in one run, each pair in namespaces of its own."""
    return make_host(res, f"{prefix}h1", 1), make_host(res, f"{prefix}h2", 2)


def connectivity(h1: Host, h2: Host, timeout: float = 15.0) -> None:
    """Ping until h1 reaches h2 (a switch may need a moment to open its ports).

    The successful ping also makes the switch learn both MACs, so what follows
    is known-unicast forwarding.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if h1.ping(h2.ip, 1, 1):
            # Static neighbours: no ARP refresh mid-measurement, and the 64-byte
            # stream is never preceded by an ARP exchange.
            h1.run("ip", "neigh", "replace", h2.ip, "lladdr", h2.mac, "dev", h1.ifname, "nud", "permanent")
            h2.run("ip", "neigh", "replace", h1.ip, "lladdr", h1.mac, "dev", h2.ifname, "nud", "permanent")
            return
    raise RuntimeError(f"{h1.role} ({h1.ip}) cannot reach {h2.role} ({h2.ip}) through the switch")


def pid_alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")
