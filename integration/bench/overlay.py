"""The overlay section: container to container across two hosts, over a tunnel.

Each row builds, in namespaces of its own (192.168.50.0/24 and 10.200.0.0/24
exist only inside them):

  container a --veth-- host a [switch] ==underlay veth== [switch] host b --veth-- container b
  10.200.0.1, MTU 1450       192.168.50.1              192.168.50.2           10.200.0.2, MTU 1450

and runs one switch setup on both hosts (SETUPS):
  kernel    a Linux bridge + a vxlan device (VNI 100) per host
  OVS       Open vSwitch 3.1 userspace per host (its own ovsdb-server and
            ovs-vswitchd inside the host's namespace, sw_ovs.py) in OVS's
            documented tunnel layout: br-phy holds the underlay veth and the
            host's address, br-int the container's port and the vxlan port.
            userspace-tso-enable off (OVS's default) or on ("+TSO"); the
            containers' offloads on, or off ("tx off": `ethtool -K eth0 tx off`
            in both containers, what OVS 3.1's users are told to do)
  ovslite   one ovslited per host, one bridge: the container's port and a
            vxlan, geneve or gre port; the underlay address stays on the plain
            veth (the common layout of docs/overlay.md)
Offloads stay at the veth defaults (TSO, tx checksum) everywhere but "tx off".

Measured from container a to container b, as the core cases: RTT (idle, first),
TCP 1 and 4 streams (iperf3), 64-byte frames (measure.forwarding_rate:
the same trafgen frame, sampled over the same steady window). CPU is that of
the switch processes of both hosts (utime+stime: ovslited or ovs-vswitchd,
nothing else on the machine); the kernel's vxlan works in softirq context,
which cannot be told apart from the rest of a shared machine, so its CPU is
n/a. During the 1-stream TCP run each host's switch CPU is also taken
(cores busy), which says which side limits the throughput.

OVS 3.1 with the containers' offloads on is known to carry no TCP over a
tunnel (it drops TSO frames that enter one, and forwards partial checksums
unfinished), so those rows' TCP figures are not required to be positive: a
failed iperf3 is recorded as 0 Gbit/s with its error in the notes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import measure, sw_ovs, sw_ovslite
from .hosts import Host, connectivity
from .resources import CommandError, Resources, run, wait_for
from .sw_ovslite import PortSpec

GROUP = "overlay"
UNDERLAY = "192.168.50"
OVERLAY = "10.200.0"
INNER_MTU = 1450  # 1500 minus the 50 bytes of outer IPv4 + UDP + VXLAN, as docs/overlay.md says
VNI = "100"
CONNECT_TIMEOUT = 5.0  # s: iperf3's control connection (OVS with offloads on may never connect)
TCP_CPU_KEYS = ("tcp1_cpu_a", "tcp1_cpu_b")
KEYS = ("tcp1_gbps", "tcp4_gbps", "lat_p50_us", "lat_p99_us", "rate_fps", "offered_fps",
        "cpu_s_per_mframe", "cpu_util", *TCP_CPU_KEYS, "rss_peak_mib")
PROCESS_KEYS = ("cpu_s_per_mframe", "cpu_util", *TCP_CPU_KEYS, "rss_peak_mib")


@dataclass(frozen=True)
class Setup:
    name: str
    label: str
    switch: str  # kernel, ovs, ovslite
    tunnel: str = "vxlan"
    ovs_tso: bool = False
    tx_off: bool = False

    @property
    def tcp_expected(self) -> bool:
        """False where TCP is known not to pass: OVS 3.1 with the containers' offloads on."""
        return not (self.switch == "ovs" and not self.tx_off)

    def expected(self) -> tuple[str, ...]:
        return KEYS if self.tcp_expected else tuple(k for k in KEYS if not k.startswith("tcp"))

    def na(self) -> tuple[str, ...]:
        return PROCESS_KEYS if self.switch == "kernel" else ()


SETUPS = (
    Setup("overlay-kernel", "kernel vxlan", "kernel"),
    Setup("overlay-ovs", "OVS", "ovs"),
    Setup("overlay-ovs-tso", "OVS +TSO", "ovs", ovs_tso=True),
    Setup("overlay-ovs-txoff", "OVS tx off", "ovs", tx_off=True),
    Setup("overlay-ovs-tso-txoff", "OVS +TSO tx off", "ovs", ovs_tso=True, tx_off=True),
    Setup("overlay-vxlan", "ovslite vxlan", "ovslite", "vxlan"),
    Setup("overlay-geneve", "ovslite geneve", "ovslite", "geneve"),
    Setup("overlay-gre", "ovslite gre", "ovslite", "gre"),
)
#: the ratio lines under each figure: label -> case
REFERENCES = {"kernel": "overlay-kernel", "OVS": "overlay-ovs", "OVS tx off": "overlay-ovs-txoff"}
LEGEND = (
    "Overlay: container a -> host a's switch -> underlay veth -> host b's switch -> container b,",
    "one switch setup per column on both hosts. OVS = Open vSwitch userspace, userspace-tso-enable",
    "off (its default); +TSO = on; tx off = both containers ran `ethtool -K eth0 tx off` (every",
    "other column: offloads on). CPU = the switch processes of both hosts, utime+stime (kernel: n/a,",
    "softirq); 'during TCP 1 stream' = cores busy on each host while iperf3 ran.",
)


@dataclass
class Side:
    """A host namespace with its underlay veth end and one container behind it."""

    ns: str
    ip: str
    underlay: str
    cport: str  # the container veth's host end, inside `ns`
    container: Host

    def run(self, *args: str) -> str:
        return run(["ip", "netns", "exec", self.ns, *args]).stdout


@dataclass
class OverlayTopo:
    a: Side
    b: Side
    workdir: str
    #: the switch daemon(s) of host a, then of host b (none for the kernel)
    daemons: list[list] = field(default_factory=lambda: [[], []])

    def pids(self, side: int | None = None) -> list[int]:
        sides = self.daemons if side is None else [self.daemons[side]]
        return [pid for ds in sides for d in ds for pid in d.pids()]


def _side(res: Resources, letter: str, index: int, underlay: str) -> Side:
    ns = res.ns_name(f"o{letter}")
    ip = f"{UNDERLAY}.{index}"
    run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", underlay])
    run(["ip", "-n", ns, "link", "set", underlay, "up"])
    cns = res.add_namespace(f"o{letter}c")
    cport = res.link_name(f"o{letter}p")
    res.add_link(cport, ["netns", ns, "type", "veth", "peer", "name", "eth0", "netns", cns])
    cip = f"{OVERLAY}.{index}"
    run(["ip", "-n", cns, "addr", "add", f"{cip}/24", "dev", "eth0"])
    run(["ip", "-n", cns, "link", "set", "eth0", "mtu", str(INNER_MTU), "up"])
    run(["ip", "-n", ns, "link", "set", cport, "up"])
    mac = run(["ip", "netns", "exec", cns, "cat", "/sys/class/net/eth0/address"]).stdout.strip()
    return Side(ns, ip, underlay, cport, Host(res, f"o{letter}c", cns, "eth0", cport, cip, mac.lower()))


def two_hosts(res: Resources) -> tuple[Side, Side]:
    """Hosts a and b, joined by one underlay veth, each with its container."""
    for letter in "ab":
        res.add_namespace(f"o{letter}")
    ua, ub = res.link_name("oua"), res.link_name("oub")
    res.add_link(ua, ["netns", res.ns_name("oa"), "type", "veth", "peer", "name", ub,
                      "netns", res.ns_name("ob")])
    return _side(res, "a", 1, ua), _side(res, "b", 2, ub)


def _kernel(side: Side, remote: Side) -> None:
    side.run("ip", "link", "add", "vxk", "type", "vxlan", "id", VNI, "dstport", "4789",
             "local", side.ip, "remote", remote.ip, "dev", side.underlay)
    side.run("ip", "link", "add", "brk", "type", "bridge")
    for dev in ("vxk", side.cport):
        side.run("ip", "link", "set", dev, "master", "brk")
        side.run("ip", "link", "set", dev, "up")
    side.run("ip", "link", "set", "brk", "up")


def _ovs(res: Resources, side: Side, remote: Side, letter: str, setup: Setup) -> sw_ovs.Ovs:
    ovs = sw_ovs.Ovs(res, res.tempdir(f"ovs-{letter}"), side.ns)
    ovs.start(tso=setup.ovs_tso)
    side.run("ip", "addr", "flush", "dev", side.underlay)
    ovs.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
              "--", "add-port", "br-phy", side.underlay,
              "--", "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
              "--", "add-port", "br-int", side.cport,
              "--", "add-port", "br-int", "t0", "--", "set", "interface", "t0",
              f"type={setup.tunnel}", f"options:remote_ip={remote.ip}", f"options:key={VNI}")
    side.run("ip", "addr", "add", f"{side.ip}/24", "dev", "br-phy")
    for dev in ("br-phy", "br-int"):
        side.run("ip", "link", "set", dev, "up")
    wait_for(lambda: f"{UNDERLAY}.0/24 dev br-phy" in ovs.appctl("ovs/route/show"), 10,
             f"host {letter}'s OVS to learn the underlay route")
    return ovs


def _ovs_neighbours(pairs: list[tuple[sw_ovs.Ovs, Side]]) -> None:
    """Each OVS told the far host's underlay MAC: OVS resolves tunnel neighbours itself and
    drops what it would send before it has (the first pings of connectivity())."""
    for ovs, remote in pairs:
        mac = remote.run("cat", "/sys/class/net/br-phy/address").strip()
        ovs.appctl("tnl/arp/set", "br-phy", remote.ip, mac)


def _ovslite(res: Resources, side: Side, remote: Side, letter: str, setup: Setup):
    bridge = res.link_name(f"o{letter}br")
    tunnel = PortSpec("t0", setup.tunnel, {"remote_ip": remote.ip, "key": VNI})
    return sw_ovslite.start(res, {bridge: [PortSpec(side.cport), tunnel]}, role=f"ovslite-{letter}",
                            netns=side.ns)


def build(res: Resources, setup: Setup) -> OverlayTopo:
    a, b = two_hosts(res)
    topo = OverlayTopo(a, b, res.tempdir("work"))
    pairs = ((a, b, "a"), (b, a, "b"))
    if setup.switch == "kernel":
        for side, remote, _ in pairs:
            _kernel(side, remote)
    elif setup.switch == "ovs":
        sw_ovs.ensure_installed()
        topo.daemons = [[_ovs(res, side, remote, letter, setup)] for side, remote, letter in pairs]
        _ovs_neighbours([(topo.daemons[0][0], b), (topo.daemons[1][0], a)])
    elif setup.switch == "ovslite":
        topo.daemons = [[_ovslite(res, side, remote, letter, setup)] for side, remote, letter in pairs]
    else:
        raise ValueError(f"unknown switch {setup.switch!r}")
    if setup.tx_off:
        for side in (a, b):
            side.container.run("ethtool", "-K", "eth0", "tx", "off")
    connectivity(a.container, b.container, timeout=30)
    return topo


def _tcp(topo: OverlayTopo, seconds: float, streams: int, notes: list[str]) -> tuple[float, dict]:
    """Gbit/s container a -> b, and for one stream each host's switch CPU (cores) meanwhile."""
    before = [measure.cpu_seconds(topo.pids(i)) for i in (0, 1)]
    t0 = time.monotonic()
    try:
        gbps = measure.tcp_throughput(topo.a.container, topo.b.container, seconds, streams,
                                      CONNECT_TIMEOUT)
    except CommandError as exc:
        notes.append(f"TCP, {streams} stream{'s' if streams > 1 else ''}: nothing moved: {exc}")
        return 0.0, {}
    dt = time.monotonic() - t0
    if streams != 1 or not topo.pids():
        return gbps, {}
    used = [measure.cpu_seconds(topo.pids(i)) - b for i, b in zip((0, 1), before, strict=True)]
    return gbps, dict(zip(TCP_CPU_KEYS, (u / dt for u in used), strict=True))


def _drops(topo: OverlayTopo) -> list[str]:
    notes = []
    for letter, daemons in zip("ab", topo.daemons, strict=True):
        for d in daemons:
            counted = d.drops() if hasattr(d, "drops") else {}
            if counted:
                notes.append(f"host {letter} ovslite drops: "
                             + ", ".join(f"{k}={v}" for k, v in sorted(counted.items())))
    return notes


def measure_setup(res: Resources, setup: Setup, s, step) -> tuple[dict, list[str]]:
    """One row: build `setup` on two hosts, then RTT, TCP 1 and 4 streams, 64-byte frames."""
    step(f"building two hosts, {setup.label}")
    topo = build(res, setup)
    h1, h2 = topo.a.container, topo.b.container
    notes: list[str] = []
    m: dict = dict.fromkeys(PROCESS_KEYS)
    step(f"latency, {s.pings} pings")
    m.update(measure.latency(h1, h2, s.pings))
    for streams in (1, 4):
        step(f"TCP {streams} stream(s), {s.tcp_seconds:g} s")
        m[f"tcp{streams}_gbps"], cpu = _tcp(topo, s.tcp_seconds, streams, notes)
        m.update(cpu)
    step(f"64-byte frames, {s.rate_seconds:g} s")
    time.sleep(0.2)  # let the queues of the TCP runs drain
    m.update(measure.forwarding_rate(h1, h2, topo.pids(), s.rate_seconds, topo.workdir, s.warmup))
    m["rss_peak_mib"] = measure.peak_rss_mib(topo.pids())
    for daemons in topo.daemons:
        for d in daemons:
            notes += [n for n in d.notes if n not in notes]
    return m, notes + _drops(topo)


def references(results: list[dict]) -> dict[str, dict]:
    """The overlay table's ratio references (label -> metrics) that ran without error."""
    by_name = {r["name"]: r for r in results}
    return {label: by_name[name]["metrics"] for label, name in REFERENCES.items()
            if name in by_name and not by_name[name].get("error")}


def ovs_tcp_lines(results: list[dict]) -> list[str]:
    """Which OVS settings carried TCP in this run (1 stream, Gbit/s), said in words."""
    by_name = {r["name"]: r for r in results}
    carried, nothing = [], []
    for setup in SETUPS:
        r = by_name.get(setup.name)
        if setup.switch != "ovs" or r is None or r.get("error"):
            continue
        gbps = r["metrics"].get("tcp1_gbps") or 0.0
        if gbps > 0:
            carried.append(f"{setup.label} {gbps:.2f}")
        else:
            nothing.append(setup.label)
    out = []
    if nothing:
        out.append(f"TCP through OVS: none with {', '.join(nothing)} (iperf3 moved 0 bytes).")
    if carried:
        out.append(f"TCP through OVS, 1 stream, Gbit/s: {', '.join(carried)}.")
    return out
