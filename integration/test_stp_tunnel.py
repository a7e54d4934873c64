"""Spanning tree across tunnel ports: two hosts joined by two vxlan tunnels
(keys 100 and 200) between the same bridges, the loop a user makes by doubling
a tunnel for redundancy. Split horizon keeps the loop from storming (nothing
goes from one tunnel to the other), but without a tree each broadcast arrives
twice; with RSTP the BPDUs cross the tunnels, one tunnel port is an alternate,
and a broadcast arrives once. Hosts as in test_tunnel.py."""

from __future__ import annotations

import re
import time

import pytest

from .netns import wait_for, why_unusable
from .test_tunnel import start_ovslite, two_hosts
from .test_tunnel_mesh import container_rx, send_broadcast

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]


def broadcast_copies(sender, receiver) -> int:
    before = container_rx(receiver)
    send_broadcast(sender)
    time.sleep(1)
    return container_rx(receiver) - before


def test_rstp_across_two_tunnels_blocks_one_and_a_broadcast_arrives_once(net, make_daemon):
    a, b = two_hosts(net)
    daemons = {}
    for host, other in ((a, b), (b, a)):
        d = daemons[host.role] = start_ovslite(make_daemon, host, "vxlan", other, "key=100")
        d.ctl("add-port", "br-tun", "t1", "--type", "vxlan", "-o", f"remote_ip={other.underlay_ip}",
              "-o", "key=200")
    assert a.ping(b).returncode == 0
    macs = {h.role: h.c("cat", "/sys/class/net/eth0/address").stdout.strip() for h in (a, b)}
    for x, y in ((a, b), (b, a)):  # no ARP broadcasts while copies are counted
        x.c("ip", "neigh", "replace", y.container_ip, "lladdr", macs[y.role], "dev", "eth0",
            "nud", "permanent")
    assert broadcast_copies(a, b) == 2  # the doubled tunnel, without a tree
    for host, d in ((a, daemons["a"]), (b, daemons["b"])):  # a host, not a switch: no BPDUs
        d.ctl("set-port", host.cport, "stp-enable=off")
    daemons["a"].ctl("set-br", "br-tun", "rstp=on", "rstp-priority=4096")
    daemons["b"].ctl("set-br", "br-tun", "rstp=on")

    def b_states():
        trees = daemons["b"].ctl_json("stp-show", "br-tun")
        return {n: (p.get("role"), p.get("state")) for n, p in trees[0]["ports"].items()}

    try:
        wait_for(lambda: sorted(b_states()[t] for t in ("t0", "t1"))
                 == [("alternate", "discarding"), ("root", "forwarding")],
                 timeout=60, what="one tunnel port of b root and forwarding, the other alternate")
    except AssertionError:
        raise AssertionError("\n".join(d.ctl("stp-show", "br-tun").stdout + d.ctl("dump-ports", "br-tun").stdout
                                       for d in daemons.values())) from None
    show = daemons["b"].ctl("stp-show", "br-tun").stdout
    assert re.search(r"alternate\s+discarding", show), show
    wait_for(lambda: a.ping(b, count=1).returncode == 0, timeout=30, what="a reaching b")
    copies = broadcast_copies(a, b), broadcast_copies(b, a)
    assert copies == (1, 1), (copies, daemons["b"].ctl("dump-ports", "br-tun").stdout,
                              daemons["b"].ctl("stp-show", "br-tun").stdout)
