"""`make demo-overlay`: three ovslite hosts, a container on each, one L2 segment over vxlan.

    python integration/demo_overlay.py [--quick] [--json PATH]

Builds three simulated hosts h1, h2, h3: network namespaces, each with an
underlay interface eth1 (192.168.50.N/24) on one Linux bridge (the lab's
switch, in a namespace of its own), each running its own ovslited (own --db
and --socket in /tmp/ovslite-overlay-<tag>/hN) with a bridge br-tun holding
the container's veth (a system port) and one vxlan port per other host (a
full mesh, VNI 100). A container on each (10.200.0.N/24, MTU 1450). Then:

1. every pair of containers pings (the first ARP crosses the mesh);
2. one broadcast from c1, counted by tcpdump in every container: each other
   container gets it exactly once (split horizon: no loop, no duplicate), and
   the tunnel ports' counters stand still afterwards;
3. TCP between c1 and c2 (iperf3, offloads on in the containers);
4. h1's daemon is restarted under traffic, 10,000 frames/s from c2 to c1
   crossing the tunnel (integration/flow.py counts them) and c1 pinging c3
   every 10 ms, and what was lost is printed. The restart is SIGUSR2, the
   restart in place: the daemon hands its ports' fds (here the tunnels' UDP
   receive socket and the container port's packet sockets) to the next
   instance, which is what `systemctl restart` does through systemd's fd
   store (docs/service.md). kill -9 + start without systemd would not
   represent it: nothing would hold the fds, so the ports would be made anew.

Every command that builds the topology is echoed after "$". Everything it
made is removed at the end, on failure and on Ctrl-C / SIGTERM / SIGHUP too.
Exit status: 0 done; 1 a step failed; 2 this machine cannot run the demo
(one line on stderr says why); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shlex
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script (make demo-overlay)
    sys.path.insert(0, str(REPO))

from integration import demo_overlay_traffic as traffic  # noqa: E402
from integration.demo import CTL, DAEMON, Demo, _raise_interrupt, namespaces_and_install  # noqa: E402
from integration.demo_bench import PREFIX, CommandError, Ovslite, run, signals_ignored, write_json  # noqa: E402

UNDERLAY = "192.168.50"
OVERLAY = "10.200.0"
VNI = 100
INNER_MTU = 1450
BRIDGE = "br-tun"
TOOLS = {"ip": "iproute2", "ping": "iputils-ping", "iperf3": "iperf3", "tcpdump": "tcpdump",
         "timeout": "coreutils", "sysctl": "procps"}


@dataclass(eq=False)  # hashable by identity: a dict key of the steps
class OverlayHost:
    """A host namespace (eth1 on the underlay, its own ovslited) and its container."""

    n: int
    ns: str
    cns: str
    daemon: Ovslite
    mac: str = ""

    @property
    def name(self) -> str:
        return f"h{self.n}"

    @property
    def underlay_ip(self) -> str:
        return f"{UNDERLAY}.{self.n}"

    @property
    def ip(self) -> str:
        return f"{OVERLAY}.{self.n}"

    @property
    def port(self) -> str:
        """The container's veth end in the host: a system port of br-tun."""
        return f"c{self.n}"

    def in_container(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.cns, *cmd]


def preflight(tag: str) -> str | None:
    """None if the demo can run here, else one line saying what is missing."""
    if os.geteuid() != 0:
        return "run me as root (sudo make demo-overlay): it creates network namespaces and veth pairs"
    missing = sorted(f"{t} (apt-get install {p})" for t, p in TOOLS.items() if shutil.which(t) is None)
    if missing:
        return f"missing {', '.join(missing)}; `make demo-overlay` installs them via `make install`"
    return namespaces_and_install(tag, "demo-overlay")


class OverlayDemo(Demo):
    """The demo's output and command helpers (say, echo, sh) with three daemons."""

    def __init__(self, args: argparse.Namespace, tag: str, workdir: str):
        super().__init__(args, tag, workdir)
        self.hosts: list[OverlayHost] = []
        self.doc: dict = {}

    def hctl(self, host: OverlayHost, *args: str, check: bool = True, show: bool = True):
        sock = host.daemon.socket
        return self.sh([str(CTL), "--socket", sock, *args], check=check, show=show,
                       display=shlex.join(["ovslite-ctl", "--socket", sock, *args]))

    def namespace(self, role: str) -> str:
        ns = self.res.ns_name(role)
        self.sh(["ip", "netns", "add", ns])
        self.res.namespaces.append(ns)
        self.sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        for key in ("all", "default"):  # no IPv6 chatter in the counts below
            self.sh(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"net.ipv6.conf.{key}.disable_ipv6=1"])
        return ns

    # -- steps -----------------------------------------------------------------------
    def run(self) -> None:
        self.say(f"ovslite overlay demo {self.tag} ({'quick' if self.args.quick else 'full'})")
        self.para(f"Three hosts h1, h2, h3 (network namespaces, each with eth1 on one underlay "
                  f"bridge, {UNDERLAY}.0/24), each running its own ovslited with bridge {BRIDGE}: "
                  f"a container's veth and a vxlan port (VNI {VNI}) to each other host, a full "
                  f"mesh. Containers c1, c2, c3 ({OVERLAY}.1-3, MTU {INNER_MTU}) share one L2 "
                  f"segment. Every name starts with {PREFIX}{self.tag}-; the daemons are private "
                  f"ones (own --db and --socket in {self.dir}). Commands are shown after $.")
        self.say("\n== 1. The underlay: a Linux bridge (the lab switch) in its own namespace ==")
        under = self.namespace("u")
        self.sh(["ip", "-n", under, "link", "add", "ubr", "type", "bridge"])
        self.sh(["ip", "-n", under, "link", "set", "ubr", "up"])
        for n in (1, 2, 3):
            self.say(f"\n== 2.{n} Host h{n}: eth1 on the underlay, a container, its own ovslited ==")
            self.hosts.append(self.make_host(n, under))
        for host in self.hosts:
            self.say(f"\n== 3.{host.n} h{host.n}: {BRIDGE} with c{host.n} and vxlan ports to the others ==")
            self.hctl(host, "add-br", BRIDGE)
            self.hctl(host, "add-port", BRIDGE, host.port)
            for other in self.hosts:
                if other is not host:
                    self.hctl(host, "add-port", BRIDGE, f"vx-{other.name}", "--type", "vxlan",
                              "-o", f"remote_ip={other.underlay_ip}", "-o", f"key={VNI}")
        self.hctl(self.hosts[0], "show")
        self.say("\n== 4. Every pair of containers pings (ARP first, across the mesh) ==")
        self.doc["pings"] = [self.ping(a, b) for a, b in ((0, 1), (0, 2), (1, 2))]
        if not all(p["received"] for p in self.doc["pings"]):
            raise CommandError("a pair of containers cannot reach each other (see above)")
        self.para("Static ARP entries in the containers from here on, so that no ARP refresh "
                  "(the kernel re-checks a neighbour ~5 s after using it) shows in the counts below:")
        for host in self.hosts:
            for other in self.hosts:
                if other is not host:
                    self.sh(["ip", "-n", host.cns, "neigh", "replace", other.ip, "lladdr", other.mac,
                             "dev", "eth0", "nud", "permanent"])
        self.say("\n== 5. One broadcast from c1, counted by tcpdump in every container ==")
        self.doc["broadcast"] = traffic.broadcast(self)
        self.say("\n== 6. TCP from c1 to c2 (iperf3; the containers keep their offloads on) ==")
        self.doc["tcp"] = traffic.tcp(self, self.hosts[0], self.hosts[1], 1 if self.args.quick else 3)
        self.say("\n== 7. h1's daemon restarts under traffic ==")
        self.doc["restart"] = traffic.restart_under_traffic(self, 4 if self.args.quick else 6)

    def make_host(self, n: int, under: str) -> OverlayHost:
        ns, cns = self.namespace(f"h{n}"), self.namespace(f"c{n}")
        self.sh(["ip", "link", "add", "eth1", "netns", ns, "type", "veth", "peer", "name", f"h{n}",
                 "netns", under])
        self.sh(["ip", "-n", under, "link", "set", f"h{n}", "master", "ubr", "up"])
        self.sh(["ip", "-n", ns, "addr", "add", f"{UNDERLAY}.{n}/24", "dev", "eth1"])
        self.sh(["ip", "-n", ns, "link", "set", "eth1", "up"])
        self.sh(["ip", "link", "add", f"c{n}", "netns", ns, "type", "veth", "peer", "name", "eth0",
                 "netns", cns])
        self.sh(["ip", "-n", cns, "addr", "add", f"{OVERLAY}.{n}/24", "dev", "eth0"])
        self.sh(["ip", "-n", cns, "link", "set", "eth0", "mtu", str(INNER_MTU), "up"])
        workdir = os.path.join(self.dir, f"h{n}")
        os.mkdir(workdir)
        daemon = Ovslite(self.res, workdir, netns=ns)
        self.echo(shlex.join(["ip", "netns", "exec", ns, str(DAEMON), "--db", daemon.db, "--socket",
                              daemon.socket, "--log-format", "json"]) + f" > {daemon.log} 2>&1 &")
        daemon.start()
        host = OverlayHost(n, ns, cns, daemon)
        host.mac = run(["ip", "netns", "exec", cns, "cat", "/sys/class/net/eth0/address"]).stdout.strip()
        return host

    def ping(self, a: int, b: int) -> dict:
        src, dst = self.hosts[a], self.hosts[b]
        count = 3
        proc = self.sh(src.in_container("ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2",
                                        dst.ip), check=False, show=False, timeout=30)
        got = traffic.ping_summary(proc.stdout, count)
        self.output([f"c{src.n} -> c{dst.n}: {got['received']}/{count} replies"
                     + (f", rtt avg {got['rtt_avg_ms']:.2f} ms" if got["received"] else "")])
        return {"src": f"c{src.n}", "dst": f"c{dst.n}", **got}

    def diagnose(self) -> None:
        """After a failure: each daemon's port counters and log tail, on stderr."""
        for host in self.hosts:
            if host.daemon.pids():
                proc = run([str(CTL), "--socket", host.daemon.socket, "dump-ports", BRIDGE],
                           check=False, timeout=10)
                print(f"{host.name}: {(proc.stdout or proc.stderr).rstrip()}", file=sys.stderr)
            tail = host.daemon.log_tail(800).strip()
            if tail:
                print(f"{host.name} ovslited log (last lines):\n{tail}", file=sys.stderr)

    def cleanup(self) -> list[str]:
        pids = [str(p) for h in self.hosts for p in h.daemon.pids()]
        self.res.dirs.append(self.dir)
        problems = self.res.close()
        left = [x for x in self.res.sweep_namespaces() + self.res.sweep_links()]
        left += [f"process {pid}" for pid in pids if os.path.exists(f"/proc/{pid}")]
        if os.path.exists(self.dir):
            left.append(self.dir)
        self.say("\n== Cleaning up ==")
        what = [f"stopped ovslited ({', '.join(pids)})"] if pids else []
        what.append(f"removed namespaces {PREFIX}{self.tag}-* (and their links) and {self.dir}")
        self.say("  " + ", ".join(what) + (": nothing left behind." if not (problems or left) else "."))
        for p in problems + [f"left behind: {x}" for x in left]:
            self.say(f"  PROBLEM: {p}")
        return problems + left


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="demo_overlay.py", description="ovslite: three hosts joined by "
                                "a vxlan full mesh (docs/overlay.md).")
    p.add_argument("--quick", action="store_true", help="shorter TCP and restart runs")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    tag = secrets.token_hex(2)
    why = preflight(tag)
    if why:
        print(f"demo-overlay: {why}", file=sys.stderr)
        return 2
    while True:
        workdir = f"/tmp/ovslite-overlay-{tag}"
        try:
            os.mkdir(workdir, 0o700)
            break
        except FileExistsError:
            tag = secrets.token_hex(2)
    t0 = time.monotonic()
    demo = OverlayDemo(args, tag, workdir)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _raise_interrupt)
    rc, error = 0, None
    try:
        demo.run()
        traffic.summary(demo)
    except KeyboardInterrupt as exc:
        rc, error = 130, f"interrupted by {exc or 'SIGINT'}"
    except Exception as exc:
        rc, error = 1, str(exc) if isinstance(exc, CommandError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, CommandError | RuntimeError):
            traceback.print_exc()
        with contextlib.suppress(Exception):  # diagnostics must not hide the failure
            demo.diagnose()
    finally:
        with signals_ignored():
            leftovers = demo.cleanup()
    doc = {"tag": tag, "dir": workdir, "quick": args.quick, "error": error, "leftovers": leftovers,
           "commands": demo.commands, "elapsed_s": round(time.monotonic() - t0, 1),
           "namespaces": {h.name: [h.ns, h.cns] for h in demo.hosts}, **demo.doc}
    if args.json:
        write_json(doc, args.json)
    if error:
        tail = ("everything it made was removed" if not leftovers
                else f"LEFT BEHIND: {', '.join(leftovers)}")
        head = error if rc == 130 else f"failed: {error}"
        print(f"demo-overlay: {head} (after {doc['elapsed_s']:.0f} s; {tail})", file=sys.stderr)
        return rc
    if leftovers:
        return 1
    print(f"\ndemo-overlay finished in {doc['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

