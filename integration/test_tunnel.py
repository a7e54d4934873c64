"""Tunnel ports (vxlan, geneve, gre) between simulated hosts.

Each host is a network namespace joined to the others by an underlay veth
(192.168.50.0/24 inside the namespaces only). A host running ovslite runs its
own ovslited inside its namespace (own database and socket), with a bridge
holding a tunnel port and a container (a namespace with a veth into the
bridge, 10.200.0.0/24, MTU 1450 as docs/overlay.md tells users). Partners: the
Linux kernel's vxlan device + Linux bridge (the only kernel tunnel built into
this machine's kernel), or a second ovslite. Offloads stay on everywhere (veth
defaults: TSO and tx checksum offload), so TCP crosses the tunnel as GSO
frames with partial checksums that ovslite must segment and finish.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from ovslite.tunnel.headers import vxlan_header

from .daemon import Daemon, port_stats
from .netns import Network, run, wait_for, why_unusable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]

UNDERLAY = "192.168.50"
OVERLAY = "10.200.0"
INNER_MTU = 1450


class SimHost:
    """A host namespace with an underlay address, and one container behind it."""

    def __init__(self, net: Network, role: str, index: int, underlay_ifname: str):
        self.net, self.role, self.index = net, role, index
        self.ns = net.add_namespace(role)
        self.underlay_ip = f"{UNDERLAY}.{index}"
        self.underlay_ifname = underlay_ifname
        # the container: eth0 in its own namespace, the other end in the host namespace
        self.cns = net.add_namespace(f"{role}c")
        self.cport = net.name(f"{role}p")
        run(["ip", "link", "add", self.cport, "netns", self.ns, "type", "veth",
             "peer", "name", "eth0", "netns", self.cns])
        self.container_ip = f"{OVERLAY}.{index}"
        self.c("ip", "addr", "add", f"{self.container_ip}/24", "dev", "eth0")
        self.c("ip", "link", "set", "eth0", "mtu", str(INNER_MTU), "up")
        self.h("ip", "link", "set", self.cport, "up")

    def h(self, *cmd: str, check: bool = True, timeout: float = 30):
        return run(["ip", "netns", "exec", self.ns, *cmd], check=check, timeout=timeout)

    def c(self, *cmd: str, check: bool = True, timeout: float = 30):
        return run(["ip", "netns", "exec", self.cns, *cmd], check=check, timeout=timeout)

    def ping(self, other: SimHost, count: int = 3):
        return self.c("ping", "-n", "-q", "-c", str(count), "-W", "2", "-i", "0.2",
                      other.container_ip, check=False, timeout=30)


def two_hosts(net: Network) -> tuple[SimHost, SimHost]:
    """Hosts a (192.168.50.1) and b (.2) joined by one underlay veth."""
    a_if, b_if = net.name("ua"), net.name("ub")
    a = SimHost(net, "a", 1, a_if)
    b = SimHost(net, "b", 2, b_if)
    run(["ip", "link", "add", a_if, "netns", a.ns, "type", "veth", "peer", "name", b_if,
         "netns", b.ns])
    for host in (a, b):
        host.h("ip", "addr", "add", f"{host.underlay_ip}/24", "dev", host.underlay_ifname)
        host.h("ip", "link", "set", host.underlay_ifname, "up")
    return a, b


def start_ovslite(make_daemon, host: SimHost, port_type: str, remote: SimHost,
                  *options: str) -> Daemon:
    d = make_daemon(f"ovslited-{host.role}", netns=host.ns)
    d.ctl("add-br", "br-tun")
    d.ctl("add-port", "br-tun", host.cport)
    opts = []
    for o in (f"remote_ip={remote.underlay_ip}", *options):
        opts += ["-o", o]
    d.ctl("add-port", "br-tun", "t0", "--type", port_type, *opts)
    return d


def kernel_vxlan(host: SimHost, remote: SimHost, vni: int = 100) -> None:
    """What a host without ovslite runs: a vxlan device in a Linux bridge."""
    host.h("ip", "link", "add", "vxk", "type", "vxlan", "id", str(vni), "dstport", "4789",
           "local", host.underlay_ip, "remote", remote.underlay_ip, "dev", host.underlay_ifname)
    host.h("ip", "link", "add", "brk", "type", "bridge")
    for dev in ("vxk", host.cport):
        host.h("ip", "link", "set", dev, "master", "brk")
        host.h("ip", "link", "set", dev, "up")
    host.h("ip", "link", "set", "brk", "up")


def port_info(d: Daemon, name: str) -> dict:
    for br in d.ctl_json("show")["bridges"]:
        for p in br["ports"]:
            if p["name"] == name:
                return p
    raise AssertionError(f"port {name} not in `show`")


def tcp_bytes(sender: SimHost, receiver: SimHost, seconds: int = 2) -> int:
    """Bytes iperf3 moved from `sender`'s container to `receiver`'s (its own count)."""
    server = receiver.net.popen(["ip", "netns", "exec", receiver.cns, "iperf3", "-s", "-1"])
    try:
        wait_for(lambda: ":5201" in receiver.c("ss", "-ltn").stdout, what="iperf3 listening")
        out = sender.c("iperf3", "-c", receiver.container_ip, "-t", str(seconds), "-J",
                       check=False, timeout=seconds + 30).stdout
    finally:
        server.wait(timeout=10) if server.poll() is None else None
    report = json.loads(out)
    assert "error" not in report, report["error"]
    return int(report["end"]["sum_received"]["bytes"])


def offloads_on(host: SimHost) -> None:
    features = host.c("ethtool", "-k", "eth0").stdout
    assert "tcp-segmentation-offload: on" in features
    assert "tx-checksumming: on" in features


@pytest.mark.parametrize("csum", ["false", "true"], ids=["no-outer-csum", "outer-csum-udp-segment"])
def test_vxlan_with_the_kernels_vxlan(net, make_daemon, csum):
    a, b = two_hosts(net)
    kernel_vxlan(b, a)
    # csum=true also sends a GSO frame's datagrams with UDP_SEGMENT
    d = start_ovslite(make_daemon, a, "vxlan", b, "key=100", f"csum={csum}")
    info = port_info(d, "t0")
    assert info["up"], info
    # ARP first: nothing is resolved in advance on either side
    assert a.ping(b).returncode == 0
    assert b.ping(a).returncode == 0
    neigh = a.c("ip", "neigh", "show", b.container_ip).stdout
    assert "lladdr" in neigh, neigh
    offloads_on(a)
    offloads_on(b)
    # TCP with TSO and partial checksums: ovslite segments and finishes them
    assert tcp_bytes(a, b) > 1_000_000
    assert tcp_bytes(b, a) > 1_000_000


def test_show_prints_the_tunnel(net, make_daemon):
    a, b = two_hosts(net)
    d = start_ovslite(make_daemon, a, "vxlan", b, "key=100")
    out = d.ctl("show").stdout
    for text in ("vxlan", "remote_ip", "192.168.50.2", "inner_mtu", str(INNER_MTU)):
        assert text in out, out


@pytest.mark.parametrize("port_type", ["geneve", "gre"])
def test_ovslite_to_ovslite(net, make_daemon, port_type):
    a, b = two_hosts(net)
    start_ovslite(make_daemon, a, port_type, b, "key=7")
    start_ovslite(make_daemon, b, port_type, a, "key=7")
    assert a.ping(b).returncode == 0
    assert b.ping(a).returncode == 0
    offloads_on(a)
    assert tcp_bytes(a, b) > 1_000_000


def test_unroutable_remote_is_down_with_the_reason(net, make_daemon):
    a, b = two_hosts(net)
    d = make_daemon("ovslited-a", netns=a.ns)
    d.ctl("add-br", "br-tun")
    d.ctl("add-port", "br-tun", "t0", "--type", "vxlan", "-o", "remote_ip=192.168.60.9")
    info = port_info(d, "t0")
    assert not info["up"]
    assert "no route to 192.168.60.9" in json.dumps(info)
    # the port follows the routing table
    a.h("ip", "route", "add", "192.168.60.0/24", "via", b.underlay_ip)
    wait_for(lambda: port_info(d, "t0")["up"], what="t0 up once 192.168.60.9 is routable")
    a.h("ip", "route", "del", "192.168.60.0/24")
    wait_for(lambda: not port_info(d, "t0")["up"], what="t0 down again")
    assert "no route to 192.168.60.9" in json.dumps(port_info(d, "t0"))


@pytest.mark.parametrize(("args", "needle"), [
    (["--type", "vxlan", "-o", "remote_ip=abc"], "remote_ip"),
    (["--type", "vxlan", "-o", "remote_ip=192.168.50.2", "-o", "key=16777216"], "key"),
    (["--type", "vxlan", "-o", "remote_ip=192.168.50.2", "-o", "dst_port=0"], "dst_port"),
    (["--type", "geneve", "-o", "remote_ip=192.168.50.2", "-o", "colour=red"], "colour"),
    (["--type", "gre"], "remote_ip"),
    (["--type", "lisp", "-o", "remote_ip=192.168.50.2"], "L3-only"),
    (["--type", "stt", "-o", "remote_ip=192.168.50.2"], "obsolete"),
])
def test_bad_tunnel_options_are_refused_and_change_nothing(net, make_daemon, args, needle):
    a, b = two_hosts(net)
    d = make_daemon("ovslited-a", netns=a.ns)
    d.ctl("add-br", "br-tun")
    before = d.db.read_text()
    proc = d.ctl("add-port", "br-tun", "t0", *args, check=False)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert d.db.read_text() == before
    assert "t0" not in d.ctl("show").stdout


def test_taken_udp_port_is_a_one_line_error(net, make_daemon):
    a, b = two_hosts(net)
    kernel_vxlan(a, b)  # the kernel holds 4789 in host a's namespace
    d = make_daemon("ovslited-a", netns=a.ns)
    d.ctl("add-br", "br-tun")
    before = d.db.read_text()
    proc = d.ctl("add-port", "br-tun", "t0", "--type", "vxlan", "-o",
                 f"remote_ip={b.underlay_ip}", check=False)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "4789" in err and "in use" in err, err
    assert d.db.read_text() == before
    # another port number works beside it
    d.ctl("add-port", "br-tun", "t0", "--type", "vxlan", "-o", f"remote_ip={b.underlay_ip}",
          "-o", "dst_port=4790")
    assert d.running
    bind_4790 = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind(('', 4790))"
    assert a.h("python3", "-c", bind_4790, check=False).returncode != 0  # ovslite holds it
    d.ctl("del-port", "t0")
    a.h("python3", "-c", bind_4790)  # and gave it back


def send_vxlan(host: SimHost, dst: str, vni: int, payload: bytes, bind: str | None = None) -> None:
    """One VXLAN datagram from `host`'s namespace (a stand-in for a misconfigured peer)."""
    script = ("import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
              f"s.bind(({bind!r} or '',0));"
              f"s.sendto(bytes.fromhex(sys.argv[1]),({dst!r},4789))")
    host.h("python3", "-c", script, (vxlan_header(vni) + payload).hex())


def port_drops(d: Daemon, name: str) -> dict:
    return port_stats(d, "br-tun")[name]["drops"]


def test_unknown_vni_and_unknown_remote_are_dropped_and_counted(net, make_daemon):
    a, b = two_hosts(net)
    d = start_ovslite(make_daemon, a, "vxlan", b, "key=100")
    inner = bytes.fromhex("ffffffffffff020000000001") + b"\x08\x06" + bytes(28)
    before = a.c("cat", "/sys/class/net/eth0/statistics/rx_packets").stdout
    send_vxlan(b, a.underlay_ip, 999, inner)  # known remote, unknown VNI
    wait_for(lambda: port_drops(d, "t0").get("unknown-key") == 1, what="unknown-key counted")
    send_vxlan(b, a.underlay_ip, 100, b"\x00" * 4)  # known remote, too short
    wait_for(lambda: port_drops(d, "t0").get("malformed") == 1, what="malformed counted")
    # an address the port does not know (a second address on host b)
    b.h("ip", "addr", "add", f"{UNDERLAY}.22/24", "dev", b.underlay_ifname)
    send_vxlan(b, a.underlay_ip, 100, inner, bind=f"{UNDERLAY}.22")
    wait_for(lambda: "unknown-remote=1" in d.ctl("show").stdout, what="unknown-remote counted")
    # none of them reached the container
    assert a.c("cat", "/sys/class/net/eth0/statistics/rx_packets").stdout == before


def test_frame_above_the_inner_mtu_is_dropped_as_too_big(net, make_daemon):
    a, b = two_hosts(net)
    d = start_ovslite(make_daemon, a, "vxlan", b, "key=100")
    start_ovslite(make_daemon, b, "vxlan", a, "key=100")
    a.c("ip", "link", "set", "eth0", "mtu", "1500")  # a container not told about the tunnel
    assert a.ping(b).returncode == 0  # small frames pass
    proc = a.c("ping", "-n", "-q", "-c", "2", "-W", "1", "-i", "0.2", "-M", "do",
               "-s", "1460", b.container_ip, check=False)
    assert proc.returncode != 0  # 1488-byte IP packets: never fragmented, never cut
    assert port_drops(d, "t0").get("too-big") == 2


def test_vxlan_over_an_ipv6_underlay_with_the_kernels_vxlan(net, make_daemon):
    a, b = two_hosts(net)
    for host, addr in ((a, "fd00:50::1"), (b, "fd00:50::2")):
        host.h("sysctl", "-q", "-w", f"net.ipv6.conf.{host.underlay_ifname}.disable_ipv6=0")
        host.h("ip", "addr", "add", f"{addr}/64", "dev", host.underlay_ifname, "nodad")
    b.h("ip", "link", "add", "vxk", "type", "vxlan", "id", "100", "dstport", "4789",
        "local", "fd00:50::2", "remote", "fd00:50::1", "dev", b.underlay_ifname)
    b.h("ip", "link", "add", "brk", "type", "bridge")
    for dev in ("vxk", b.cport):
        b.h("ip", "link", "set", dev, "master", "brk")
        b.h("ip", "link", "set", dev, "up")
    b.h("ip", "link", "set", "brk", "up")
    d = make_daemon("ovslited-a", netns=a.ns)
    d.ctl("add-br", "br-tun")
    d.ctl("add-port", "br-tun", a.cport)
    d.ctl("add-port", "br-tun", "t0", "--type", "vxlan", "-o", "remote_ip=fd00:50::2",
          "-o", "key=100")
    assert "inner_mtu=1430" in d.ctl("show").stdout  # 1500 - 70 bytes over IPv6
    a.c("ip", "link", "set", "eth0", "mtu", "1430")
    b.c("ip", "link", "set", "eth0", "mtu", "1430")
    assert a.ping(b).returncode == 0
    assert b.ping(a).returncode == 0
    assert tcp_bytes(a, b) > 1_000_000
    assert tcp_bytes(b, a) > 1_000_000


def test_tunnel_works_again_after_restarts(net, make_daemon):
    """After SIGTERM + start (sockets opened afresh) and SIGUSR2 (the receive
    socket handed over), the tunnel port is up and carries traffic again."""
    from .test_handover import restart_in_place
    a, b = two_hosts(net)
    d = start_ovslite(make_daemon, a, "vxlan", b, "key=100")
    start_ovslite(make_daemon, b, "vxlan", a, "key=100")
    assert a.ping(b).returncode == 0
    d.restart()  # SIGTERM, start again from the database
    assert port_info(d, "t0")["up"]
    assert a.ping(b).returncode == 0
    restart_in_place(d)  # SIGUSR2: exec in place
    assert port_info(d, "t0")["up"]
    assert a.ping(b).returncode == 0
    assert b.ping(a).returncode == 0


def test_restart_in_place_loses_nothing_that_crosses_the_tunnel(net, make_daemon):
    """SIGUSR2 while b's container pings a's every 10 ms: the tunnel's receive
    socket is handed over, so requests that arrive meanwhile wait in it."""
    from .test_handover import restart_in_place
    a, b = two_hosts(net)
    d = start_ovslite(make_daemon, a, "vxlan", b, "key=100")
    start_ovslite(make_daemon, b, "vxlan", a, "key=100")
    assert b.ping(a).returncode == 0
    pinger = net.popen(["ip", "netns", "exec", b.cns, "ping", "-n", "-q", "-c", "300",
                        "-i", "0.01", "-W", "5", a.container_ip],
                       stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    restart_in_place(d)
    out, _ = pinger.communicate(timeout=30)
    assert " 0% packet loss" in out, out


def test_capture_on_a_tunnel_port_shows_the_inner_frames(net, make_daemon):
    from .test_port_types import capture_lines
    a, b = two_hosts(net)
    d = start_ovslite(make_daemon, a, "vxlan", b, "key=100")
    start_ovslite(make_daemon, b, "vxlan", a, "key=100")
    assert a.ping(b).returncode == 0
    net.popen(["ip", "netns", "exec", a.cns, "ping", "-n", "-q", "-i", "0.2", "-w", "30",
               b.container_ip])
    lines = capture_lines(d, "t0", count=4)
    assert all("ICMP" in x and OVERLAY in x for x in lines), lines  # inner, not outer
    assert any(" t0 in " in x for x in lines) and any(" t0 out " in x for x in lines), lines
