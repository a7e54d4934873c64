"""VLANs on real namespaces: access ports isolate, trunks (patch pair or veth pair)
carry several VLANs between bridges with the right tags on the wire, and a host on
a trunk port sends and receives 802.1Q frames itself.

The kernel here has no 8021q module, so hosts have no VLAN interfaces: every
tag is added and removed by ovslite, or written by scapy in a namespace. A
receiving kernel strips a tag into metadata, but tcpdump -e still shows it.

Port settings go through `ovslite-ctl set-port` when the CLI has it, else into
the port's database entry followed by SIGHUP (the daemon's reload).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ovslite import portconfig

from .daemon import Daemon, ctl_cmd, log_records, port_stats
from .netns import Capture, Host, Network, run, wait_for, why_unusable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]

# -- helpers shared with test_switching.py ------------------------------------------------


@functools.cache
def cli_has(command: str) -> bool:
    """Whether this ovslite-ctl knows `command` (set-port is being added)."""
    proc = subprocess.run([*ctl_cmd(), command, "--help"], capture_output=True, timeout=20,
                          stdin=subprocess.DEVNULL)
    return proc.returncode == 0


def set_ports(d: Daemon, changes: dict[str, dict]) -> None:
    """{port: {setting: value}} applied live: set-port, or the database and SIGHUP."""
    if cli_has("set-port"):
        for port, settings in changes.items():
            d.ctl("set-port", port, *(f"{k}={v}" for k, v in settings.items()))
        return
    doc = json.loads(d.db.read_text())
    for port, settings in changes.items():
        (conf,) = [b["ports"][port] for b in doc["bridges"].values() if port in b["ports"]]
        conf["settings"] = portconfig.merge(conf.get("settings", {}),
                                            portconfig.parse(settings))
    tmp = d.db.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, d.db)

    def reloads() -> int:
        return sum(r["event"] == "reloaded" for r in log_records(d.stderr()))

    before = reloads()
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads() > before, timeout=10, what="the daemon to reload its database")


def set_port(d: Daemon, port: str, **settings) -> None:
    """set_port(d, p, tag=10, storm_control=1000): underscores become dashes."""
    set_ports(d, {port: {k.replace("_", "-"): v for k, v in settings.items()}})


def port_state(d: Daemon, name: str) -> dict:
    for br in d.ctl_json("show")["bridges"]:
        for p in br["ports"]:
            if p["name"] == name:
                return p
    raise AssertionError(f"port {name} not in `show`")


def add_bridge(d: Daemon, net: Network, role: str, hosts: list[Host]) -> str:
    br = net.name(role)
    d.ctl("add-br", br)
    for h in hosts:
        d.ctl("add-port", br, h.port)
    return br


def add_patch_pair(d: Daemon, net: Network, bra: str, brb: str) -> tuple[str, str]:
    pa, pb = net.name("pa"), net.name("pb")
    d.ctl("add-port", bra, pa, "--type", "patch", "--peer", pb)
    d.ctl("add-port", brb, pb, "--type", "patch", "--peer", pa)
    return pa, pb


def add_veth_pair(d: Daemon, net: Network, bra: str, brb: str) -> tuple[str, str]:
    """A veth pair in the root namespace, one end a system port of each bridge."""
    ta, tb = net.name("ta"), net.name("tb")
    run(["ip", "link", "add", ta, "type", "veth", "peer", "name", tb])
    net.links.append(ta)
    for dev in (ta, tb):
        with open(f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6", "w") as f:
            f.write("1")
    d.ctl("add-port", bra, ta)
    d.ctl("add-port", brb, tb)
    return ta, tb


def unreachable(src: Host, dst: Host) -> bool:
    return src.ping(dst, count=2, wait=1, interval=0.3, check=False).returncode != 0


def tcpdump(net: Network, iface: str, bpf: str, ns: str | None = None, count: int = 1,
            timeout: float = 10) -> Capture:
    """Bounded `tcpdump -e -nn` on `iface` (in namespace `ns`, or the root one)."""
    cmd = ["timeout", str(timeout), "tcpdump", "-e", "-nn", "-l", "-i", iface,
           "-c", str(count), bpf]
    if ns is not None:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    cap = Capture(net.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    cap.wait_listening()
    return cap


def stop(cap: Capture) -> str:
    """End a capture (one expected to see nothing) and return what it printed."""
    time.sleep(0.5)  # let a frame forwarded with the expected ones reach tcpdump
    cap.proc.terminate()
    out, _ = cap.proc.communicate(timeout=10)
    return out


def scapy_send(host: Host, expr: str, count: int = 3) -> None:
    """sendp(`expr`) from inside `host`'s namespace, with the venv's scapy."""
    code = ("from scapy.all import *\n"
            f"sendp({expr}, iface={host.ifname!r}, count={count}, inter=0.05, verbose=False)\n")
    host.run(sys.executable, "-c", code, timeout=60)


# -- access ports ----------------------------------------------------------------------------


def test_two_vlans_on_one_bridge_are_isolated(daemon, net):
    # One subnet for all four: only the VLANs keep h1/h2 apart from h3/h4.
    h1, h2, h3, h4 = (net.add_host(f"h{i}", i) for i in range(1, 5))
    add_bridge(daemon, net, "br", [h1, h2, h3, h4])
    set_ports(daemon, {h1.port: {"tag": 10}, h2.port: {"tag": 10},
                       h3.port: {"tag": 20}, h4.port: {"tag": 20}})
    h1.ping(h2)
    h3.ping(h4)
    assert unreachable(h1, h3), "h1 (VLAN 10) reached h3 (VLAN 20)"
    assert unreachable(h1, h4), "h1 (VLAN 10) reached h4 (VLAN 20)"
    assert unreachable(h4, h2), "h4 (VLAN 20) reached h2 (VLAN 10)"

    # Broadcasts stay in their VLAN: h1's ARP for a missing address reaches h2, not h3/h4.
    seen = tcpdump(net, h2.ifname, f"arp and ether src {h1.mac}", ns=h2.ns, timeout=15)
    leaks = [tcpdump(net, h.ifname, f"ether src {h1.mac}", ns=h.ns, timeout=15) for h in (h3, h4)]
    h1.ping("10.77.0.99", count=2, wait=1, check=False)
    rc, out = seen.result()
    assert rc == 0 and "10.77.0.99" in out, f"h2 did not see h1's ARP: {out!r}"
    for h, cap in zip((h3, h4), leaks, strict=True):
        assert stop(cap).strip() == "", f"{h.name} (VLAN 20) saw a frame of h1 (VLAN 10)"


# -- trunks between bridges ----------------------------------------------------------------------


@pytest.mark.parametrize("link", ["patch", "veth"])
def test_trunk_between_two_bridges_carries_both_vlans(daemon, net, link):
    h1, h2, h3, h4 = (net.add_host(f"h{i}", i) for i in range(1, 5))
    bra = add_bridge(daemon, net, "bra", [h1, h3])
    brb = add_bridge(daemon, net, "brb", [h2, h4])
    # The trunk ends keep the default settings: trunk, every VLAN.
    ends = (add_patch_pair if link == "patch" else add_veth_pair)(daemon, net, bra, brb)
    set_ports(daemon, {h1.port: {"tag": 10}, h2.port: {"tag": 10},
                       h3.port: {"tag": 20}, h4.port: {"tag": 20}})
    wait_for(lambda: all(port_state(daemon, e)["up"] for e in ends), timeout=5, what="trunk up")
    h1.ping(h2)
    h3.ping(h4)
    h4.ping(h3)
    assert unreachable(h1, h4), f"h1 (VLAN 10) reached h4 (VLAN 20) over the {link} trunk"
    assert unreachable(h3, h2), f"h3 (VLAN 20) reached h2 (VLAN 10) over the {link} trunk"
    if link == "patch":
        return
    # On the wire between the bridges, each VLAN's frames carry their own tag. A
    # capture on one end of the link sees both directions: what ovslite sends
    # out of it (the request) and what it receives from the other bridge (the reply).
    ta, _tb = ends
    for src, dst, vid in ((h1, h2, 10), (h3, h4, 20)):
        cap = tcpdump(net, ta, "vlan and icmp", count=2, timeout=15)
        src.ping(dst, count=1)
        rc, out = cap.result()
        assert rc == 0, f"nothing crossed {ta}: {out!r}"
        for a, b in ((src, dst), (dst, src)):
            assert f"vlan {vid}, p 0, ethertype IPv4 (0x0800), {a.ip} > {b.ip}: ICMP" in out, (
                f"{ta}: expected VLAN {vid} ICMP {a.ip} > {b.ip}: {out!r}")


def test_trunk_link_carries_no_untagged_or_foreign_vlan_frames(daemon, net):
    h1, h2 = net.add_host("h1", 1), net.add_host("h2", 2)
    bra = add_bridge(daemon, net, "bra", [h1])
    brb = add_bridge(daemon, net, "brb", [h2])
    ta, tb = add_veth_pair(daemon, net, bra, brb)
    set_ports(daemon, {h1.port: {"tag": 10}, h2.port: {"tag": 10},
                       ta: {"trunks": "10"}, tb: {"trunks": "10"}})
    wait_for(lambda: port_state(daemon, ta)["up"], timeout=5, what=f"{ta} up")
    leaks = [tcpdump(net, end, "not vlan 10", timeout=20) for end in (ta, tb)]
    h1.ping(h2)
    h2.ping(h1)
    for end, cap in zip((ta, tb), leaks, strict=True):
        assert stop(cap).strip() == "", f"untagged or other-VLAN frames on {end} (trunks=10)"


# -- a host on a trunk port ------------------------------------------------------------------


def test_host_on_trunk_port_sends_and_receives_tagged_frames(daemon, net):
    h1, h3, ht = net.add_host("h1", 1), net.add_host("h3", 3), net.add_host("ht", 5)
    br = add_bridge(daemon, net, "br", [h1, h3, ht])
    set_ports(daemon, {h1.port: {"tag": 10}, h3.port: {"tag": 20}})  # ht: trunk, all VLANs

    # ht -> VLAN 10: a tagged broadcast reaches h1 (untagged there), not h3.
    probe = ("Ether(dst='ff:ff:ff:ff:ff:ff')/Dot1Q(vlan={vid}, prio=5)/"
             "IP(src='10.77.0.5', dst='10.77.0.255')/UDP(sport=4000, dport=9999)/Raw(b'probe')")
    got = tcpdump(net, h1.ifname, "udp port 9999", ns=h1.ns, timeout=25)
    leak = tcpdump(net, h3.ifname, "udp port 9999", ns=h3.ns, timeout=25)
    scapy_send(ht, probe.format(vid=10))
    rc, out = got.result()
    assert rc == 0 and "10.77.0.5.4000 > 10.77.0.255.9999" in out, out
    assert "vlan" not in out, f"h1's access port delivered a tagged frame: {out!r}"
    assert stop(leak).strip() == "", "a VLAN 10 broadcast from the trunk host reached VLAN 20"

    # A VLAN nobody else carries, and untagged (VLAN 0) frames, reach no access host.
    leaks = [tcpdump(net, h.ifname, "udp port 9999", ns=h.ns, timeout=25) for h in (h1, h3)]
    scapy_send(ht, probe.format(vid=30), count=2)
    scapy_send(ht, probe.replace("Dot1Q(vlan={vid}, prio=5)/", ""), count=2)
    for h, cap in zip((h1, h3), leaks, strict=True):
        assert stop(cap).strip() == "", f"{h.name} got a VLAN 30 or untagged frame"

    # ht <- VLAN 10 and VLAN 20: the access hosts' ARPs arrive tagged.
    for src, vid in ((h1, 10), (h3, 20)):
        cap = tcpdump(net, ht.ifname, f"arp and ether src {src.mac}", ns=ht.ns, timeout=15)
        src.ping("10.77.0.99", count=1, wait=1, check=False)
        rc, out = cap.result()
        assert rc == 0 and f"vlan {vid}, p 0" in out and "10.77.0.99" in out, out
    assert port_stats(daemon, br)[ht.port]["drops"] == {}
