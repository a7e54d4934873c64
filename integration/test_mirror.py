"""Port mirrors on real namespaces: the copies a monitoring host receives (tcpdump there),
once and whole, for each selection kind, across patch ports, to an output VLAN; what the
output port receives is dropped; mirrors survive a restart.

Tunnel ports are exercised with test_tunnel's hosts (ovslite and the kernel's vxlan).
Every host of the other tests pings with a permanent ARP entry, so the only frames are the ICMP ones
counted; a mirror output is a system port whose host (`mon`) only listens.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from .daemon import Daemon
from .netns import Host, Network, wait_for, why_unusable
from .test_tunnel import kernel_vxlan, start_ovslite, two_hosts
from .test_vlan import set_port, tcpdump

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]

PINGS = 4
SIZE = 1000  # ICMP payload: "length 1008" in tcpdump's line


def hosts(net: Network, *roles: str) -> list[Host]:
    made = [net.add_host(r) for r in roles]
    for a in made:
        for b in made:
            if a is not b:
                a.set_neighbor(b)
    return made


def bridge(d: Daemon, net: Network, role: str, ports: list[str]) -> str:
    br = net.name(role)
    d.ctl("add-br", br)
    for p in ports:
        d.ctl("add-port", br, p)
    return br


def copies(net: Network, mon: Host, action, bpf: str = "icmp", seconds: float = 2.0) -> list[str]:
    """The frames `mon` receives (tcpdump -e lines) while `action` runs, and a little after."""
    cap = tcpdump(net, mon.ifname, bpf, ns=mon.ns, count=10000, timeout=seconds + 8)
    action()
    time.sleep(seconds)
    cap.proc.terminate()
    out, _ = cap.proc.communicate(timeout=10)
    return [line for line in out.splitlines() if line.strip()]


def kinds(lines: list[str]) -> dict[str, int]:
    """{'request': n, 'reply': n} of ICMP echo lines."""
    out = {"request": 0, "reply": 0}
    for line in lines:
        assert f"length {SIZE + 8}" in line, line  # whole: the payload is all there
        out["request" if "echo request" in line else "reply"] += 1
    return out


def ping_sized(src: Host, dst: Host):
    def run():
        src.run("ping", "-n", "-q", "-c", str(PINGS), "-i", "0.1", "-W", "2", "-s", str(SIZE),
                dst.ip, timeout=30)
    return run


def mirror_stats(d: Daemon, br: str, name: str) -> dict:
    (m,) = [m for m in d.ctl_json("list-mirrors", br) if m["name"] == name]
    return m


@pytest.mark.parametrize("select,expected", [
    (["--select-src-port", "h1"], {"request": PINGS, "reply": 0}),
    (["--select-dst-port", "h1"], {"request": 0, "reply": PINGS}),
    (["--select-src-port", "h1", "--select-dst-port", "h1,h2"], {"request": PINGS, "reply": PINGS}),
    (["--select-all"], {"request": PINGS, "reply": PINGS}),
], ids=["src", "dst", "src+dst overlapping", "all"])
def test_each_selection_copies_once_and_whole(daemon, net, select, expected):
    h1, h2, h3, mon = hosts(net, "h1", "h2", "h3", "mon")
    br = bridge(daemon, net, "br", [h.port for h in (h1, h2, h3, mon)])
    names = {"h1": h1.port, "h2": h2.port}
    select = [",".join(names.get(p, p) for p in a.split(",")) for a in select]
    daemon.ctl("add-mirror", br, "m", *select, "--output-port", mon.port)
    h1.ping(h2, count=1)  # learn both: the pings below are known unicast (flow-cacheable)
    seen = copies(net, mon, ping_sized(h1, h2))
    assert kinds(seen) == expected, seen
    m = mirror_stats(daemon, br, "m")
    assert m["packets"] >= sum(expected.values()) and m["dropped"] == 0, m


def test_vlan_selection_and_a_trunk_output_keep_the_tag(daemon, net):
    h1, h2, h3, h4, mon = hosts(net, "h1", "h2", "h3", "h4", "mon")
    br = bridge(daemon, net, "br", [h.port for h in (h1, h2, h3, h4, mon)])
    for h, tag in ((h1, 10), (h2, 10), (h3, 20), (h4, 20)):
        set_port(daemon, h.port, tag=tag)
    set_port(daemon, mon.port, vlan_mode="trunk")
    daemon.ctl("add-mirror", br, "v10", "--select-all", "--select-vlan", "10",
               "--output-port", mon.port)

    def both():
        ping_sized(h1, h2)()
        ping_sized(h3, h4)()

    seen = copies(net, mon, both, bpf="vlan and icmp")
    assert kinds(seen) == {"request": PINGS, "reply": PINGS}, seen
    assert all("vlan 10" in line for line in seen), seen


def test_output_vlan_floods_copies_tagged_to_trunks_untagged_to_access(daemon, net):
    h1, h2, trunk, mon = hosts(net, "h1", "h2", "tr", "mon")
    br = bridge(daemon, net, "br", [h.port for h in (h1, h2, trunk, mon)])
    set_port(daemon, h1.port, tag=10)
    set_port(daemon, h2.port, tag=10)
    set_port(daemon, trunk.port, vlan_mode="trunk", trunks="99")
    set_port(daemon, mon.port, tag=99)
    daemon.ctl("add-mirror", br, "rspan", "--select-src-port", h1.port, "--output-vlan", "99")
    cap = tcpdump(net, trunk.ifname, "vlan 99 and icmp", ns=trunk.ns, count=PINGS, timeout=15)
    seen = copies(net, mon, ping_sized(h1, h2))
    assert kinds(seen) == {"request": PINGS, "reply": 0}, seen
    assert all(" vlan " not in line for line in seen), seen  # access port: untagged
    code, tagged = cap.result()
    assert code == 0 and len(tagged.splitlines()) == PINGS, tagged


def test_patch_ports_can_be_selected_and_be_outputs(daemon, net):
    # br0: h1, pa (to br1), pc (to br2); br1: pb, h2; br2: pd, mon.
    # Frames h1 -> h2 leave br0 by patch pa (selected as destination); the copies go
    # out by patch pc (the output) into br2, which floods them to mon.
    h1, h2, mon = hosts(net, "h1", "h2", "mon")
    br0 = bridge(daemon, net, "b0", [h1.port])
    br1 = bridge(daemon, net, "b1", [h2.port])
    br2 = bridge(daemon, net, "b2", [mon.port])
    pa, pb, pc, pd = (net.name(r) for r in ("pa", "pb", "pc", "pd"))
    for br, port, peer in ((br0, pa, pb), (br1, pb, pa), (br0, pc, pd), (br2, pd, pc)):
        daemon.ctl("add-port", br, port, "--type", "patch", "--peer", peer)
    daemon.ctl("add-mirror", br0, "p", "--select-dst-port", pa, "--output-port", pc)
    h1.ping(h2, count=1)
    seen = copies(net, mon, ping_sized(h1, h2))
    assert kinds(seen) == {"request": PINGS, "reply": 0}, seen
    trace = daemon.ctl("trace", br0, f"in_port={h1.port}", f"dl_src={h1.mac}",
                       f"dl_dst={h2.mac}").stdout
    assert f"mirror p: copy to {pc}" in trace, trace


def test_output_port_input_is_dropped_and_counted(daemon, net):
    h1, h2, mon = hosts(net, "h1", "h2", "mon")
    br = bridge(daemon, net, "br", [h.port for h in (h1, h2, mon)])
    daemon.ctl("add-mirror", br, "m", "--select-src-port", h1.port, "--output-port", mon.port)
    assert mon.ping(h1, count=3, wait=1, interval=0.2, check=False).returncode != 0
    text = daemon.ctl("dump-ports", br).stdout
    found = re.search(r"mirror-output=(\d+)", text)
    assert found and int(found.group(1)) >= 3, text
    assert mon.mac not in json.dumps(daemon.ctl_json("fdb-show", br))  # never learned


def test_mirrors_survive_a_restart(daemon, net):
    h1, h2, mon = hosts(net, "h1", "h2", "mon")
    br = bridge(daemon, net, "br", [h.port for h in (h1, h2, mon)])
    daemon.ctl("add-mirror", br, "m", "--select-src-port", h1.port, "--output-port", mon.port)
    daemon.restart()
    wait_for(lambda: h1.ping(h2, count=1, wait=1, check=False).returncode == 0, timeout=15,
             what="forwarding after the restart")
    assert [m["name"] for m in daemon.ctl_json("list-mirrors", br)] == ["m"]
    seen = copies(net, mon, ping_sized(h1, h2))
    assert kinds(seen) == {"request": PINGS, "reply": 0}, seen


def test_gso_frames_are_copied_whole(daemon, net):
    """A TCP stream h1 -> h2 with the kernel's offloads: the datapath sees 64 KB GSO
    frames; their copies reach mon as such (longer than the MTU) and carry every byte."""
    h1, h2, mon = hosts(net, "h1", "h2", "mon")
    br = bridge(daemon, net, "br", [h.port for h in (h1, h2, mon)])
    daemon.ctl("add-mirror", br, "m", "--select-src-port", h1.port, "--output-port", mon.port)
    port = "5211"
    h2.popen("iperf3", "-s", "-1", "-B", h2.ip, "-p", port)
    wait_for(lambda: h2.run("ss", "-ltn", check=False).stdout.count(f":{port}") > 0,
             timeout=10, what="iperf3 server to listen")
    before = mon.stat("rx_bytes"), h2.stat("rx_bytes")
    lines = copies(net, mon, lambda: h1.run("iperf3", "-c", h2.ip, "-p", port, "-n", "4M",
                                            timeout=40),
                   bpf=f"tcp and dst host {h2.ip} and greater 2000")
    copied, original = mon.stat("rx_bytes") - before[0], h2.stat("rx_bytes") - before[1]
    assert lines, "no copy longer than the MTU: GSO frames were not copied as such"
    # h2 received only what h1 sent (permanent ARP entries): mon got every byte of it
    assert copied == original > 1_000_000, (copied, original)
    m = mirror_stats(daemon, br, "m")
    assert m["dropped"] == 0 and m["packets"] > 0, m


def test_tunnel_ports_can_be_selected_and_be_outputs(net, make_daemon):
    """Host a runs ovslite (bridge br-tun: container port, vxlan t0 to host b, and a
    monitoring veth mona whose other end monb stays in a's namespace); host b runs the
    kernel's vxlan in a Linux bridge (test_tunnel's set-up)."""
    a, b = two_hosts(net)
    kernel_vxlan(b, a)
    d = start_ovslite(make_daemon, a, "vxlan", b, "key=100")
    a.h("ip", "link", "add", "mona", "type", "veth", "peer", "name", "monb")
    for dev in ("mona", "monb"):
        a.h("ip", "link", "set", dev, "up")
    d.ctl("add-port", "br-tun", "mona")
    # the tunnel port selected: what arrives through it is copied to mona
    d.ctl("add-mirror", "br-tun", "in", "--select-src-port", "t0", "--output-port", "mona")
    cap = tcpdump(net, "monb", f"icmp and src host {b.container_ip}", ns=a.ns, count=3,
                  timeout=20)
    assert a.ping(b).returncode == 0
    code, out = cap.result()
    assert code == 0 and out.count("echo reply") == 3, out
    # the tunnel port as output: copies of what the container sends cross to host b
    d.ctl("del-mirror", "br-tun", "in")
    d.ctl("add-mirror", "br-tun", "out", "--select-src-port", a.cport, "--output-port", "t0")
    cap = tcpdump(net, "vxk", f"icmp and src host {a.container_ip}", ns=b.ns, count=3,
                  timeout=20)
    a.ping(b)  # no reply: t0 now carries copies only
    code, out = cap.result()
    assert code == 0 and out.count("echo request") == 3, out
