"""internal, tap and patch ports, as a user sees them: kernel interfaces in the
host or in a container's namespace, TAPs, patch cables between bridges (loops
included) and `ovslite-ctl capture` on a port without a kernel device.

The root namespace is the real host: the internal-port tests give an interface
there a 10.78.x address on a /24 nobody uses here, and remove it at teardown.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from .daemon import Daemon, ctl_cmd, port_stats
from .netns import RUN_ID, Host, Network, run, wait_for, why_unusable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]

_subnets = itertools.count()


def free_subnet() -> str:
    """A 10.78.N (/24) unique to this test and not on any root-namespace interface."""
    used = run(["ip", "-4", "-o", "addr"]).stdout + run(["ip", "-4", "route"]).stdout
    while True:
        prefix = f"10.78.{(int(RUN_ID, 16) + next(_subnets)) % 250 + 1}"
        if f"{prefix}." not in used:
            return prefix


@pytest.fixture
def host_addrs():
    """Root-namespace addresses added by a test as (dev, cidr); removed at teardown."""
    added: list[tuple[str, str]] = []
    yield added
    for dev, cidr in added:
        if os.path.exists(f"/sys/class/net/{dev}"):
            run(["ip", "addr", "del", cidr, "dev", dev], check=False)


def configure_host_side(added: list, dev: str, cidr: str) -> None:
    """What a user does with an internal port: address it and bring it up (no IPv6)."""
    with open(f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6", "w") as f:
        f.write("1")
    run(["ip", "addr", "add", cidr, "dev", dev])
    added.append((dev, cidr))
    run(["ip", "link", "set", dev, "up"])


def port_state(d: Daemon, name: str) -> dict:
    for br in d.ctl_json("show")["bridges"]:
        for p in br["ports"]:
            if p["name"] == name:
                return p
    raise AssertionError(f"port {name} not in `show`")


def ns_addr(ns: str, ifname: str) -> dict | None:
    """`ip -n NS -j addr show dev IFNAME`, or None if there is no such interface."""
    proc = run(["ip", "-n", ns, "-j", "addr", "show", "dev", ifname], check=False)
    return json.loads(proc.stdout)[0] if proc.returncode == 0 and proc.stdout.strip() else None


def ipv4(info: dict) -> list[str]:
    return [f"{a['local']}/{a['prefixlen']}" for a in info["addr_info"] if a["family"] == "inet"]


def bridge_with_host(d: Daemon, net: Network, role: str, host: str, index: int):
    br = net.name(role)
    d.ctl("add-br", br)
    h = net.add_host(host, index)
    d.ctl("add-port", br, h.port)
    return br, h


class PidHost(Host):
    """A host whose namespace is known only by a process id (a container)."""

    pid: int = 0

    def exec_cmd(self, *cmd: str) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-n", *cmd]


# -- 1. internal ports, host side -----------------------------------------------------


def test_internal_port_in_root_namespace_ping_and_iperf3(daemon, net, host_addrs):
    net.subnet = free_subnet()
    br, h1 = bridge_with_host(daemon, net, "br", "h1", 2)
    ip = net.name("in")
    daemon.ctl("add-port", br, ip, "--type", "internal")
    assert os.path.exists(f"/sys/class/net/{ip}"), f"no kernel interface {ip} after add-port"
    addr = f"{net.subnet}.1"
    configure_host_side(host_addrs, ip, f"{addr}/24")
    h1.ping(addr)

    port = str(20000 + int(net.tag, 16) % 20000)
    for reverse in ((), ("-R",)):  # h1 -> host stack, then host stack -> h1
        net.popen(["iperf3", "-s", "-1", "-B", addr, "-p", port])
        wait_for(lambda: f"{addr}:{port}" in run(["ss", "-Hltn"]).stdout,
                 timeout=10, what="iperf3 server on the internal port")
        proc = h1.run("iperf3", "-c", addr, "-p", port, "-t", "3", "-J", *reverse,
                      "--connect-timeout", "5000", check=False, timeout=40)
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            pytest.fail(f"iperf3 exit {proc.returncode}: {proc.stdout!r} {proc.stderr!r}")
        assert "error" not in result, f"iperf3 {reverse} failed: {result['error']}"
        bps = result["end"]["sum_received"]["bits_per_second"]
        way = "host stack -> h1" if reverse else "h1 -> host stack"
        print(f"iperf3 TCP {way} via internal port {ip}: {bps / 1e9:.2f} Gbit/s, "
              f"{result['end']['sum_sent'].get('retransmits', '?')} retransmits")
        assert bps >= 1e9, f"{way}: only {bps / 1e9:.3f} Gbit/s through an internal port"
        wait_for(lambda: f"{addr}:{port}" not in run(["ss", "-Hltn"]).stdout,
                 timeout=10, what="iperf3 server to exit")
    daemon.ctl("del-port", br, ip)
    assert not os.path.exists(f"/sys/class/net/{ip}"), f"{ip} still exists after del-port"


def test_bridge_local_port_is_the_hosts_way_in(daemon, net, host_addrs):
    net.subnet = free_subnet()
    br, h1 = bridge_with_host(daemon, net, "br", "h1", 2)
    assert os.path.exists(f"/sys/class/net/{br}"), f"add-br made no interface {br}"
    configure_host_side(host_addrs, br, f"{net.subnet}.1/24")
    h1.ping(f"{net.subnet}.1")
    daemon.ctl("del-br", br)
    assert not os.path.exists(f"/sys/class/net/{br}"), f"{br} still exists after del-br"


# -- 2. internal ports as container NICs ------------------------------------------------


def containers(d: Daemon, net: Network):
    """br with h1 (system, 10.78.0.1), c1 (--netns) and c2 (--netns-pid of a sleep)."""
    net.subnet = "10.78.0"
    br, h1 = bridge_with_host(d, net, "br", "h1", 1)
    ns = net.add_namespace("c1")
    c1 = Host(net, "c1", ns, "eth0", net.name("c1"), "10.78.0.2")
    d.ctl("add-port", br, c1.port, "--type", "internal", "--netns", ns, "--ifname", "eth0",
          "--ip", "10.78.0.2/24", "--gateway", "10.78.0.1")
    # A "container": a process in a namespace of its own, known by its pid only.
    sleeper = net.popen(["unshare", "--net", "sleep", "300"])
    me = os.readlink("/proc/self/ns/net")
    wait_for(lambda: os.readlink(f"/proc/{sleeper.pid}/ns/net") != me, what="unshare")
    c2 = PidHost(net, "c2", "", "eth0", net.name("c2"), "10.78.0.3")
    c2.pid = sleeper.pid
    for key in ("all", "default"):
        c2.run("sysctl", "-q", "-w", f"net.ipv6.conf.{key}.disable_ipv6=1")
    d.ctl("add-port", br, c2.port, "--type", "internal", "--netns-pid", str(sleeper.pid),
          "--ifname", "eth0", "--ip", "10.78.0.3/24")
    return br, h1, c1, c2


def check_nic(c: Host, gateway: str | None, when: str) -> str:
    """eth0 is in c's namespace, up, addressed and routed; returns its MAC."""
    info = json.loads(c.run("ip", "-j", "addr", "show", "dev", "eth0").stdout)[0]
    assert "UP" in info["flags"], f"{when}: eth0 in {c.name} not up: {info['flags']}"
    assert ipv4(info) == [f"{c.ip}/24"], f"{when}: {c.name} eth0 addresses {ipv4(info)}"
    routes = json.loads(c.run("ip", "-j", "route", "show", "default").stdout)
    want = [(gateway, "eth0")] if gateway else []
    assert [(r.get("gateway"), r.get("dev")) for r in routes] == want, (
        f"{when}: default routes in {c.name}: {routes}")
    assert not os.path.exists(f"/sys/class/net/{c.port}"), f"{when}: {c.port} in root ns"
    return info["address"]


def test_container_internal_ports_netns_and_netns_pid(daemon, net):
    br, h1, c1, c2 = containers(daemon, net)
    check_nic(c1, "10.78.0.1", "after add-port --netns")
    check_nic(c2, None, "after add-port --netns-pid")
    c1.ping(h1)
    h1.ping(c1)
    c2.ping(c1)
    h1.ping(c2)
    daemon.ctl("del-port", br, c1.port)
    assert ns_addr(c1.ns, "eth0") is None, f"eth0 still in {c1.ns} after del-port"
    daemon.ctl("del-port", br, c2.port)
    assert c2.run("ip", "link", "show", "eth0", check=False).returncode != 0, (
        "eth0 still in the --netns-pid namespace after del-port")


def test_container_nic_after_daemon_restart(daemon, net):
    br, h1, c1, c2 = containers(daemon, net)
    h1.ping(c1)
    h1.ping(c2)  # h1 now has both containers' MACs in its ARP cache, as any peer would
    macs = {c.name: check_nic(c, gw, "before restart") for c, gw in ((c1, "10.78.0.1"), (c2, None))}
    daemon.restart()
    # The socket answers before the configuration is restored: give it a moment.
    wait_for(lambda: all(c.ip in c.run("ip", "-br", "addr", "show", "dev", "eth0",
                                       check=False).stdout for c in (c1, c2)),
             timeout=5, what="both eth0 back in their namespaces with their addresses")
    after = {c.name: check_nic(c, gw, "after restart") for c, gw in ((c1, "10.78.0.1"), (c2, None))}
    # What a client of the container does first: reach it (the container sends nothing).
    first = h1.ping(c1, count=5, wait=1, check=False)
    neigh = h1.run("ip", "neigh", "show", c1.ip).stdout.strip()
    c1.ping(h1)
    c2.ping(h1)
    h1.ping(c2)
    assert first.returncode == 0, (
        f"h1 cannot reach c1 right after the daemon restart: eth0 came back with another MAC "
        f"(before {macs}, after {after}); h1 still has {neigh!r}")


# -- 3. tap ports -------------------------------------------------------------------------


def test_tap_port_persistent_tap_moved_into_a_namespace(daemon, net):
    net.subnet = "10.78.0"
    br, h1 = bridge_with_host(daemon, net, "br", "h1", 1)
    tap = net.name("tp")
    run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
    net.links.append(tap)
    daemon.ctl("add-port", br, tap, "--type", "tap")
    # Moved after add-port: before, ovslite would not find it and would make a new one.
    ns = net.add_namespace("h3")
    run(["ip", "link", "set", tap, "netns", ns])
    h3 = Host(net, "h3", ns, tap, tap, "10.78.0.3")
    h3.run("ip", "addr", "add", "10.78.0.3/24", "dev", tap)
    h3.run("ip", "link", "set", tap, "up")
    assert port_state(daemon, tap)["up"], port_state(daemon, tap)
    h1.ping(h3)
    h3.ping(h1)
    info = {p["name"]: p for p in daemon.ctl_json("dump-ports", br)}[tap]["info"]
    assert info.get("created") == "no", f"a pre-existing TAP reported as created: {info}"
    daemon.ctl("del-port", br, tap)
    assert h3.run("ip", "link", "show", tap, check=False).returncode == 0, (
        f"del-port removed the persistent TAP {tap} that ovslite did not create")


def test_tap_port_created_by_ovslite_goes_with_del_port(daemon, net):
    br = net.name("br")
    daemon.ctl("add-br", br)
    tap = net.name("tp")
    net.links.append(tap)
    daemon.ctl("add-port", br, tap, "--type", "tap")
    assert os.path.exists(f"/sys/class/net/{tap}/tun_flags"), f"add-port made no TAP {tap}"
    daemon.ctl("del-port", br, tap)
    assert not os.path.exists(f"/sys/class/net/{tap}"), f"{tap} still exists after del-port"


# -- 4. patch ports -----------------------------------------------------------------------


def add_patch(d: Daemon, bridge: str, name: str, peer: str) -> None:
    d.ctl("add-port", bridge, name, "--type", "patch", "--peer", peer)


def two_bridges(d: Daemon, net: Network):
    """bra with h1 and brb with h2, and the names for a patch pair pa (on bra), pb."""
    net.subnet = "10.78.0"
    bra, h1 = bridge_with_host(d, net, "bra", "h1", 1)
    brb, h2 = bridge_with_host(d, net, "brb", "h2", 2)
    return bra, brb, net.name("pa"), net.name("pb"), h1, h2


def test_patch_ports_join_two_bridges(daemon, net):
    bra, brb, pa, pb, h1, h2 = two_bridges(daemon, net)
    add_patch(daemon, bra, pa, pb)
    st = port_state(daemon, pa)
    assert not st["up"] and st["reason"] == f"peer {pb} does not exist", st
    assert f"down (peer {pb} does not exist)" in daemon.ctl("show").stdout
    add_patch(daemon, brb, pb, pa)
    assert port_state(daemon, pa)["up"] and port_state(daemon, pb)["up"]
    h1.ping(h2)
    h2.ping(h1)
    assert run(["ip", "link", "show", pa], check=False).returncode != 0, f"{pa} is a kernel device"

    a, b = port_stats(daemon, bra)[pa], port_stats(daemon, brb)[pb]
    assert a["tx_packets"] >= 6 and a["rx_packets"] >= 6, a
    assert (a["tx_packets"], a["tx_bytes"]) == (b["rx_packets"], b["rx_bytes"]), (a, b)
    assert (a["rx_packets"], a["rx_bytes"]) == (b["tx_packets"], b["tx_bytes"]), (a, b)

    daemon.ctl("del-port", brb, pb)
    st = port_state(daemon, pa)
    assert not st["up"] and st["reason"] == f"peer {pb} does not exist", st
    assert h1.ping(h2, count=2, wait=1, check=False).returncode != 0, "h2 reachable without pb"
    add_patch(daemon, brb, pb, pa)
    assert port_state(daemon, pa)["up"], port_state(daemon, pa)
    h1.ping(h2)


def test_patch_traffic_rides_a_cached_flow(daemon, net):
    """After the first frames, h1 -> h2 frames skip both bridges: dump-flows shows the flow
    through the patch pair counting them; cutting the cable removes it."""
    bra, brb, pa, pb, h1, h2 = two_bridges(daemon, net)
    add_patch(daemon, bra, pa, pb)
    add_patch(daemon, brb, pb, pa)
    h1.set_neighbor(h2)
    h2.set_neighbor(h1)
    h1.ping(h2, count=1)  # both MACs learned on both bridges
    h1.ping(h2, count=20, interval=0.01)
    out = daemon.ctl("dump-flows", bra).stdout
    print(out)
    mine = [x for x in out.splitlines()
            if x.startswith(f"in_port={h1.port},dl_src={h1.mac},dl_dst={h2.mac},dl_type=0x0800 ")]
    assert len(mine) == 1 and mine[0].endswith(f"actions:{pa}>{pb},output:{h2.port}"), out
    packets = int(mine[0].split(" packets:")[1].split(",")[0])
    assert packets >= 19, mine  # all but the first echo request of the 20
    doc = daemon.ctl_json("dump-flows")
    assert doc["stats"]["hits"] >= 38, doc["stats"]  # requests and replies
    assert {f["in_port"] for f in doc["flows"]} >= {h1.port, h2.port}, doc

    daemon.ctl("del-port", brb, pb)
    assert f"{pa}>{pb}" not in daemon.ctl("dump-flows").stdout
    assert h1.ping(h2, count=2, wait=1, check=False).returncode != 0, "h2 reachable without pb"


def test_patch_peer_on_same_bridge_or_not_a_patch_is_down(daemon, net):
    br, h1 = bridge_with_host(daemon, net, "br", "h1", 1)
    px, py, pz = net.name("px"), net.name("py"), net.name("pz")
    add_patch(daemon, br, px, py)
    add_patch(daemon, br, py, px)
    add_patch(daemon, br, pz, h1.port)
    for name, reason in ((px, f"peer {py} is on the same bridge"),
                         (py, f"peer {px} is on the same bridge"),
                         (pz, f"peer {h1.port} is not a patch port")):
        st = port_state(daemon, name)
        assert not st["up"] and st["reason"] == reason, st


# -- 5. patch loops -----------------------------------------------------------------------


ARP_FLOOD = """
import socket, sys, time
ifname, mac, ip, target, seconds = sys.argv[1:]
arp = bytes.fromhex("0001080006040001") + bytes.fromhex(mac.replace(":", ""))
arp += socket.inet_aton(ip) + bytes(6) + socket.inet_aton(target)
frame = b"\\xff" * 6 + bytes.fromhex(mac.replace(":", "")) + b"\\x08\\x06" + arp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
n, end = 0, time.monotonic() + float(seconds)
while time.monotonic() < end:
    for _ in range(100):
        s.send(frame)
    n += 100
print(n)
"""


def test_patch_loop_is_bounded_and_daemon_stays_responsive(daemon, net):
    net.subnet = "10.78.0"
    xa, h1 = bridge_with_host(daemon, net, "xa", "h1", 1)
    xb, h2 = bridge_with_host(daemon, net, "xb", "h2", 2)
    xc = net.name("xc")
    daemon.ctl("add-br", xc)
    ring = {xa: xb, xb: xc, xc: xa}
    bridges = {xa: "a", xb: "b", xc: "c"}
    for left, right in ring.items():  # port "ab" on xa, peer "ba" on xb, ...
        mine, theirs = bridges[left] + bridges[right], bridges[right] + bridges[left]
        add_patch(daemon, left, net.name(mine), net.name(theirs))
        add_patch(daemon, right, net.name(theirs), net.name(mine))
    assert all(p["up"] for b in daemon.ctl_json("show")["bridges"] for p in b["ports"]
               if p["type"] == "patch")

    # 4 s of ARP requests for an unused address, as fast as h1 can send them (niced: the
    # sender stands for outside traffic, not for a local process competing for the CPU).
    flood = h1.popen("nice", "-n", "19", sys.executable, "-c", ARP_FLOOD, h1.ifname, h1.mac,
                     h1.ip, "10.78.0.99", "4", stdout=subprocess.PIPE, text=True)
    slowest, busy = 0.0, []
    while flood.poll() is None:
        t0 = time.monotonic()
        daemon.ctl("show", timeout=10)
        slowest = max(slowest, time.monotonic() - t0)
        busy.append(daemon.cpu_seconds(over=0.3) / 0.3)
    sent = flood.communicate(timeout=10)[0].strip()
    print(f"ARP flood: {sent} frames sent; daemon CPU during it {max(busy, default=0):.0%}; "
          f"slowest `show` {slowest:.2f}s")
    assert slowest < 2, f"`ovslite-ctl show` took {slowest:.2f}s during the loop"

    samples = []  # CPU seconds per second, until one is near idle (at most 6)
    while len(samples) < 6 and (not samples or samples[-1] >= 0.1):
        samples.append(daemon.cpu_seconds(over=1.0))
    print(f"daemon CPU per second after the storm: {samples}")
    assert samples[-1] < 0.1, f"daemon still busy after the storm: {samples}"
    t0 = time.monotonic()
    daemon.ctl("show", timeout=10)
    assert time.monotonic() - t0 < 2, "`show` slow after the loop"

    loops = {(br, name): s["drops"].get("loop", 0) for br in ring
             for name, s in port_stats(daemon, br).items()}
    print(f"loop drops: { {k[1]: v for k, v in loops.items() if v} }")
    assert sum(loops.values()) > 0, f"no 'loop' drops counted: {loops}"

    daemon.ctl("del-port", xc, net.name("ca"))
    daemon.ctl("del-port", xa, net.name("ac"))
    h1.ping(h2)
    h2.ping(h1)
    assert daemon.running


# -- 6. capture on a patch port -------------------------------------------------------------


def capture_cmd(d: Daemon, *args: str) -> list[str]:
    return [*ctl_cmd(), "--socket", d.socket, "capture", *args]


def capture_lines(d: Daemon, *args: str, count: int) -> list[str]:
    """`ovslite-ctl capture ARGS -c COUNT` (bounded by `timeout`): its lines."""
    proc = run(["timeout", "15", *capture_cmd(d, *args, "-c", str(count))], check=False,
               timeout=20)
    print(proc.stdout)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == count, (proc.returncode, proc.stdout,
                                                          proc.stderr)
    return lines


def test_capture_on_patch_port(daemon, net):
    bra, brb, pa, pb, h1, h2 = two_bridges(daemon, net)
    add_patch(daemon, bra, pa, pb)
    add_patch(daemon, brb, pb, pa)
    h1.set_neighbor(h2)
    h2.set_neighbor(h1)
    h1.ping(h2, count=1)
    h1.popen("ping", "-n", "-q", "-i", "0.2", "-w", "40", h2.ip)

    pipeline = " ".join(capture_cmd(daemon, pa, "-w", "-", "-c", "4")) + " | tcpdump -nr -"
    proc = run(["timeout", "15", "sh", "-c", pipeline], check=False, timeout=20)
    print(proc.stdout)
    assert proc.returncode == 0, f"{pipeline}: exit {proc.returncode}, {proc.stderr}"
    lines = proc.stdout.splitlines()
    assert len(lines) == 4, proc.stdout
    assert any("ICMP echo request" in x for x in lines), proc.stdout
    assert any("ICMP echo reply" in x for x in lines), proc.stdout

    lines = capture_lines(daemon, pa, count=4)
    assert all("ICMP" in x for x in lines), lines
    assert any(f" {pa} in " in x for x in lines), lines
    assert any(f" {pa} out " in x for x in lines), lines
    lines = capture_lines(daemon, pa, "--direction", "in", count=3)
    assert all(f" {pa} in " in x for x in lines), lines

    # An endless capture ended by Ctrl-C.
    endless = net.popen(capture_cmd(daemon, pa), stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([endless.stdout], [], [], 10)
    assert ready, "endless capture printed nothing in 10 s"
    stopped = daemon.stderr().count("capture stopped")
    endless.send_signal(signal.SIGINT)
    try:
        out, err = endless.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("capture did not end within 10 s of SIGINT")
    assert endless.returncode == 0, f"exit {endless.returncode} on SIGINT; stderr {err!r}"
    assert "frames captured" in err, err
    wait_for(lambda: daemon.stderr().count("capture stopped") > stopped, timeout=5,
             what="the daemon to log 'capture stopped'")
    capture_lines(daemon, pa, count=2)  # the daemon takes a new capture
