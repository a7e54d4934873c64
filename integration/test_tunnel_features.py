"""Tunnel features as a user drives them from ovslite-ctl, on real namespaces:
fdb-show's remote and fdb-add --remote on a port with two remotes, dump-ports'
per-remote counters, the split-horizon setting on a relay host, capture --outer
checked against tcpdump on the same underlay interface, and monitor reporting a
tunnel port going down and up with the reason. Hosts as in test_tunnel.py and
test_tunnel_mesh.py (ovslite on every host)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from scapy.layers.inet import GRE, ICMP, UDP
from scapy.layers.vxlan import VXLAN
from scapy.utils import rdpcap

from .daemon import ctl_cmd, port_stats
from .netns import Network, wait_for, why_unusable
from .test_tunnel import SimHost, start_ovslite, tcp_bytes, two_hosts
from .test_tunnel_mesh import hub_with_two_remotes, three_hosts

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]


def container_mac(host: SimHost) -> str:
    return host.c("cat", "/sys/class/net/eth0/address").stdout.strip().lower()


def pin_neighbour(host: SimHost, other: SimHost) -> None:
    """No ARP between the containers during a measured period."""
    host.c("ip", "neigh", "replace", other.container_ip, "lladdr", container_mac(other),
           "dev", "eth0", "nud", "permanent")


def test_fdb_shows_and_pins_the_remote_of_a_multi_remote_port(net, make_daemon):
    a, b, c = three_hosts(net)
    d, d_b, _ = hub_with_two_remotes(make_daemon, a, b, c)
    assert a.ping(b).returncode == 0 and a.ping(c).returncode == 0
    mac_b, mac_c = container_mac(b), container_mac(c)

    entries = {e["mac"]: e for e in d.ctl_json("fdb-show", "br-tun")}
    assert entries[mac_b]["port"] == "t0" and entries[mac_b]["remote"] == b.underlay_ip
    assert entries[mac_c]["remote"] == c.underlay_ip
    assert "remote" not in entries[container_mac(a)]  # a local port: no remote
    text = d.ctl("fdb-show", "br-tun").stdout
    print(text)
    assert any(f"t0 ({c.underlay_ip})" in x and mac_c in x for x in text.splitlines()), text

    # per-remote counters: each remote's line counts what went to it and came from it
    ports = {p["name"]: p for p in d.ctl_json("dump-ports", "br-tun")}
    remotes = {r["remote"]: r for r in ports["t0"]["remotes"]}
    assert set(remotes) == {b.underlay_ip, c.underlay_ip}
    assert all(r["rx_packets"] >= 3 and r["tx_packets"] >= 3 for r in remotes.values()), remotes
    text = d.ctl("dump-ports", "br-tun").stdout
    print(text)
    assert f"remote {c.underlay_ip}: rx pkts=" in text

    # refusals: one line, exit 1, the database untouched
    before = d.db.read_text()
    for port, remote, needle in ((a.cport, b.underlay_ip, "is not a tunnel port"),
                                 ("t0", "192.168.50.9", "is not a remote of port t0")):
        proc = d.ctl("fdb-add", "br-tun", mac_c, port, "--remote", remote, check=False)
        assert proc.returncode == 1 and needle in proc.stderr, proc.stderr
        assert len(proc.stderr.splitlines()) == 1
    assert d.db.read_text() == before

    # pinned to the wrong remote (b), c's MAC is sent to b only: the ping dies there
    pin_neighbour(a, c)
    d.ctl("fdb-add", "br-tun", mac_c, "t0", "--remote", b.underlay_ip)
    assert json.loads(d.db.read_text())["bridges"]["br-tun"]["config"]["static-macs"] == [
        {"mac": mac_c, "vlan": 0, "port": "t0", "remote": b.underlay_ip}]
    entry = next(e for e in d.ctl_json("fdb-show", "br-tun") if e["mac"] == mac_c)
    assert entry["static"] and entry["remote"] == b.underlay_ip
    b_rx = port_stats(d_b, "br-tun")["t0"]["rx_packets"]
    assert a.ping(c, count=3).returncode != 0
    assert port_stats(d_b, "br-tun")["t0"]["rx_packets"] >= b_rx + 3
    d.ctl("fdb-del", "br-tun", mac_c)
    assert a.ping(c).returncode == 0


def test_split_horizon_off_lets_a_hub_relay_between_tunnels(net, make_daemon):
    """a and c each have one tunnel, to b; b relays between its two tunnel ports only
    with split-horizon=off on them."""
    a, b, c = three_hosts(net)
    start_ovslite(make_daemon, a, "vxlan", b, "key=100")
    start_ovslite(make_daemon, c, "vxlan", b, "key=100")
    hub = make_daemon("ovslited-b", netns=b.ns)
    hub.ctl("add-br", "br-tun")
    hub.ctl("add-port", "br-tun", b.cport)
    for name, remote in (("ta", a), ("tc", c)):
        hub.ctl("add-port", "br-tun", name, "--type", "vxlan", "-o",
                f"remote_ip={remote.underlay_ip}", "-o", "key=100")
    assert a.ping(b).returncode == 0 and c.ping(b).returncode == 0
    assert a.ping(c, count=2).returncode != 0  # split horizon (the default) on the hub
    for name in ("ta", "tc"):
        hub.ctl("set-port", name, "split-horizon=off")
    assert "split-horizon: off" in hub.ctl("show").stdout
    assert a.ping(c).returncode == 0
    for name in ("ta", "tc"):
        hub.ctl("set-port", name, "split-horizon=")  # back to the default: on
    assert a.ping(c, count=2).returncode != 0


CAPTURE_FILTERS = {"vxlan": "udp port 4789", "gre": "ip proto 47"}


@pytest.mark.parametrize("port_type", ["vxlan", "gre"])
def test_capture_outer_writes_what_tcpdump_sees_on_the_underlay(net, make_daemon, tmp_path,
                                                               port_type):
    a, b = two_hosts(net)
    d = start_ovslite(make_daemon, a, port_type, b, "key=100")
    start_ovslite(make_daemon, b, port_type, a, "key=100")
    assert a.ping(b).returncode == 0
    pin_neighbour(a, b)
    pin_neighbour(b, a)
    ours, theirs = tmp_path / "outer.pcap", tmp_path / "tcpdump.pcap"
    count = 10  # 5 echo requests out, 5 replies in
    capture = subprocess.Popen(
        [*ctl_cmd(), "--socket", d.socket, "capture", "t0", "--outer", "-c", str(count),
         "-w", str(ours)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    net.procs.append(capture)
    tcpdump = net.popen(["ip", "netns", "exec", a.ns, "tcpdump", "-i", a.underlay_ifname, "-U",
                         "-c", str(count), "-w", str(theirs), CAPTURE_FILTERS[port_type]],
                        stderr=subprocess.PIPE, text=True)
    wait_for(lambda: theirs.exists() and ours.exists() and ours.stat().st_size > 0,
             what="both captures started")
    time.sleep(1)  # the daemon opens its sockets when it reads the request
    assert a.ping(b, count=5).returncode == 0
    out, err = capture.communicate(timeout=20)
    assert capture.returncode == 0, err
    assert f"{count} encapsulated packets captured on t0 (underlay)" in err, err
    tcpdump.wait(timeout=20)
    mine, reference = rdpcap(str(ours)), rdpcap(str(theirs))
    assert [bytes(p) for p in mine] == [bytes(p) for p in reference]
    for packet in mine:
        if port_type == "vxlan":
            assert packet[UDP].dport == 4789 and packet[VXLAN].vni == 100
        else:
            assert packet[GRE].key == 100 and packet[GRE].proto == 0x6558
        assert ICMP in packet  # the inner frame, inside the outer headers
    # one line per packet without -w; --direction as for inner captures
    net.popen(["ip", "netns", "exec", a.cns, "ping", "-n", "-q", "-i", "0.2", "-w", "20",
               b.container_ip])
    lines = d.ctl("capture", "t0", "--outer", "--direction", "out", "-c", "2").stdout.splitlines()
    outer = f"{b.underlay_ip}.4789: UDP" if port_type == "vxlan" else f"{b.underlay_ip}: proto 47"
    assert len(lines) == 2 and all(" t0 out " in x and outer in x for x in lines), lines


def test_capture_outer_refusals_are_one_line(net, make_daemon):
    a, b = two_hosts(net)
    d = start_ovslite(make_daemon, a, "vxlan", b, "key=100")
    proc = d.ctl("capture", a.cport, "--outer", "-c", "1", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"ovslite-ctl: --outer: port {a.cport} is not a tunnel port "
                                   "(vxlan, geneve, gre)")
    d.ctl("add-port", "br-tun", "t9", "--type", "gre", "-o", "remote_ip=192.168.60.9")
    proc = d.ctl("capture", "t9", "--outer", "-c", "1", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("ovslite-ctl: --outer: no route to 192.168.60.9: "
                                   "no underlay to capture on")


def t0_up(d) -> bool:
    return any(p["name"] == "t0" and p["up"] for br in d.ctl_json("show")["bridges"]
               for p in br["ports"])


def test_monitor_reports_a_tunnel_going_down_and_up_with_the_reason(net: Network, make_daemon):
    a, b = two_hosts(net)
    d = start_ovslite(make_daemon, a, "vxlan", b, "key=100")
    assert t0_up(d)
    monitor = subprocess.Popen([*ctl_cmd(), "--socket", d.socket, "--format", "json", "monitor",
                                "--group", "state"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    net.procs.append(monitor)
    time.sleep(1)  # subscribed
    a.h("ip", "addr", "del", f"{a.underlay_ip}/24", "dev", a.underlay_ifname)
    wait_for(lambda: not t0_up(d), what="t0 down")
    a.h("ip", "addr", "add", f"{a.underlay_ip}/24", "dev", a.underlay_ifname)
    wait_for(lambda: t0_up(d), what="t0 up")
    time.sleep(0.5)
    monitor.send_signal(signal.SIGINT)
    out, err = monitor.communicate(timeout=10)
    events = [json.loads(x) for x in out.splitlines()]
    t0 = [(e.get("state"), e.get("reason")) for e in events
          if e.get("event") == "port-state" and e.get("port") == "t0"]
    assert t0[:1] == [("down", f"no route to {b.underlay_ip}")], (out, err)
    assert t0[-1][0] == "up", (out, err)


def ipv6_underlay(a: SimHost, b: SimHost) -> dict:
    addresses = {a: "fd00:50::1", b: "fd00:50::2"}
    for host, addr in addresses.items():
        host.h("sysctl", "-q", "-w", f"net.ipv6.conf.{host.underlay_ifname}.disable_ipv6=0")
        host.h("ip", "addr", "add", f"{addr}/64", "dev", host.underlay_ifname, "nodad")
    return addresses


@pytest.mark.parametrize(("port_type", "inner_mtu", "options"), [
    ("geneve", 1430, ()), ("gre", 1438, ()),
    ("geneve", 1430, ("csum=false",)),  # zero UDP checksums sent, and taken (RFC 6935)
], ids=["geneve", "gre", "geneve-zero-udp-csum"])
def test_geneve_and_gre_over_an_ipv6_underlay_between_ovslite_hosts(net, make_daemon, port_type,
                                                                     inner_mtu, options):
    """Over IPv6 the outer header is 40 bytes: geneve 1500 - 40 - 16 - 14, gre with a
    key 1500 - 40 - 8 - 14. A raw IPv6 GRE socket hands over no outer header (unlike
    IPv4), which the receive side already expects."""
    a, b = two_hosts(net)
    addresses = ipv6_underlay(a, b)
    daemons = {}
    for host, other in ((a, b), (b, a)):
        d = daemons[host] = make_daemon(f"ovslited-{host.role}", netns=host.ns)
        d.ctl("add-br", "br-tun")
        d.ctl("add-port", "br-tun", host.cport)
        d.ctl("add-port", "br-tun", "t0", "--type", port_type, "-o",
              f"remote_ip={addresses[other]}", "-o", "key=100",
              *(x for o in options for x in ("-o", o)))
    assert f"inner_mtu={inner_mtu}" in daemons[a].ctl("show").stdout
    for host in (a, b):
        host.c("ip", "link", "set", "eth0", "mtu", str(inner_mtu))
    assert a.ping(b).returncode == 0
    assert b.ping(a).returncode == 0
    assert tcp_bytes(a, b) > 1_000_000


@pytest.mark.parametrize("port_type", ["vxlan", "geneve", "gre"])
def test_ipv6_underlay_with_open_vswitch_userspace(net, make_daemon, tmp_path, port_type):
    """ovslite <-> Open vSwitch 3.1 userspace over IPv6, OVS in its br-phy layout."""
    import shutil

    from .test_tunnel_ovs import TunnelOvs
    if not shutil.which("ovs-vswitchd"):
        pytest.skip("Open vSwitch is not installed (integration/bench/sw_ovs.py installs it)")
    a, b = two_hosts(net)
    addresses = ipv6_underlay(a, b)
    rundir = tmp_path / "ovs"
    rundir.mkdir()
    ovs = TunnelOvs(b, rundir)
    try:
        ovs.tunnel_layout(port_type, addresses[a])
        b.h("sysctl", "-q", "-w", "net.ipv6.conf.br-phy.disable_ipv6=0")
        b.h("ip", "addr", "add", f"{addresses[b]}/64", "dev", "br-phy", "nodad")
        for dev in ("br-phy", "br-int"):
            b.h("ip", "link", "set", dev, "up")
        d = make_daemon("ovslited-a", netns=a.ns)
        d.ctl("add-br", "br-tun")
        d.ctl("add-port", "br-tun", a.cport)
        # csum=false: OVS 3.1 userspace drops UDP packets whose checksum arrives
        # unfinished over a veth (what a local socket's checksum is), as over IPv4
        csum = [] if port_type == "gre" else ["-o", "csum=false"]
        d.ctl("add-port", "br-tun", "t0", "--type", port_type, "-o",
              f"remote_ip={addresses[b]}", "-o", "key=100", *csum)
        for host in (a, b):
            host.c("ip", "link", "set", "eth0", "mtu", "1400")
        ovs.first_ping(a, addresses[a], "fd00:50::/64 dev br-phy",
                       lambda: d.ctl("dump-ports", "br-tun").stdout)
        assert a.ping(b).returncode == 0
        assert b.ping(a).returncode == 0
    finally:
        ovs.stop()
