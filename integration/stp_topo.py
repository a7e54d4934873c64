"""Loops for the spanning tree tests and bench: two ovslite bridges and a third,
real bridge (the Linux bridge with its kernel STP, or Open vSwitch 3.1 userspace
with RSTP), joined in a triangle.

    hA -- brA ====== brB -- hB        brA-brB: a veth pair, or a patch pair
            \\        /
             \\      /
              brK (10.77.0.3)         in its own namespace

brA and brB are bridges of one ovslited (a patch pair needs both in one
daemon), or of two (`daemon_b`, as the bench runs them); brK lives in namespace `k` with its own address, so it is both the
third switch and the third host. Every link is a veth pair whose root
namespace ends are ovslite ports and whose far ends are brK's. Port states
are read from each side's own tool: `ovslite-ctl stp-show`, `bridge link`
(kernel), `ovs-vsctl get port ... rstp_status` (OVS).
"""

from __future__ import annotations

import json
import time

from .netns import Network, run, wait_for
from .private_ovs import PrivateOvs

#: the kernel's lowest timers (net/bridge/br_private.h: BR_MIN_*), in centiseconds
KERNEL_TIMERS = {"forward_delay": 200, "hello_time": 100, "max_age": 600}
BLOCKED = ("blocking", "discarding", "listening")
#: ovslite's timers in the triangles: OVS's lowest (the kernel's go lower still)
OVSLITE_TIMERS = {m: (f"{m}-hello-time=1", f"{m}-max-age=6", f"{m}-forward-delay=4")
                  for m in ("stp", "rstp")}


def veth(net: Network, a: str, b: str, b_ns: str | None = None) -> None:
    """A veth pair a (root namespace) - b (root or `b_ns`), both up."""
    if b_ns:
        run(["ip", "link", "add", a, "type", "veth", "peer", "name", b, "netns", b_ns])
        run(["ip", "-n", b_ns, "link", "set", b, "up"])
    else:
        run(["ip", "link", "add", a, "type", "veth", "peer", "name", b])
        net.links.append(b)
        run(["ip", "link", "set", b, "up"])
    net.links.append(a)
    run(["ip", "link", "set", a, "up"])
    for name in (a, b) if not b_ns else (a,):
        try:
            with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
                f.write("1")
        except OSError:
            pass


class KernelBridge:
    kind = "kernel"

    def __init__(self, ns: str, name: str, priority: int):
        self.ns, self.name = ns, name
        timers = [str(x) for kv in KERNEL_TIMERS.items() for x in kv]
        run(["ip", "-n", ns, "link", "add", name, "type", "bridge", *timers,
             "priority", str(priority)])
        run(["ip", "-n", ns, "link", "set", name, "type", "bridge", "stp_state", "1"])

    def add_port(self, port: str) -> None:
        run(["ip", "-n", self.ns, "link", "set", port, "master", self.name])

    def states(self) -> dict[str, str]:
        out = run(["ip", "netns", "exec", self.ns, "bridge", "-j", "link", "show"]).stdout
        return {rec["ifname"]: rec.get("state", "") for rec in json.loads(out or "[]")
                if rec.get("master") == self.name}

    def is_root(self) -> bool:
        # sysfs, not `ip -d -j link`: iproute2 6.1 prints the bridge id as root_id
        where = f"/sys/class/net/{self.name}/bridge"
        ids = run(["ip", "netns", "exec", self.ns, "cat", f"{where}/root_id",
                   f"{where}/bridge_id"]).stdout.split()
        return ids[0] == ids[1]

    def stop(self) -> None:
        pass  # goes with its namespace


class OvsBridge(PrivateOvs):
    """Open vSwitch 3.1 userspace in namespace `ns`, every file in `rundir`, one
    netdev bridge with RSTP (rstp_enable=true)."""

    kind = "ovs"

    def __init__(self, ns: str, name: str, priority: int, rundir: str):
        super().__init__(ns, rundir)
        self.name = name
        self.vsctl("add-br", name, "--", "set", "bridge", name, "datapath_type=netdev",
                   "rstp_enable=true", f"other_config:rstp-priority={priority}")
        run(["ip", "-n", ns, "link", "set", name, "up"])

    def add_port(self, port: str) -> None:
        self.vsctl("add-port", self.name, port)

    def states(self) -> dict[str, str]:
        return {port: self._status("port", port).get("rstp_port_state", "").lower()
                for port in self.vsctl("list-ports", self.name).split()}

    def _status(self, table: str, record: str) -> dict[str, str]:
        """An rstp_status column, {key=value, ...}, as a dict of unquoted strings."""
        text = self.vsctl("get", table, record, "rstp_status").strip().strip("{}")
        pairs = (part.strip().partition("=") for part in text.split(","))
        return {k: v.strip('"') for k, _, v in pairs}

    def is_root(self) -> bool:
        status = self._status("bridge", self.name)
        return status.get("rstp_bridge_id") == status.get("rstp_root_id")



def ovslite_states(daemon, bridge: str) -> dict[str, str]:
    trees = daemon.ctl_json("stp-show", bridge)
    return {name: p.get("state", "") for name, p in trees[0]["ports"].items()}


def ovslite_is_root(daemon, bridge: str) -> bool:
    return bool(daemon.ctl_json("stp-show", bridge)[0]["root"]["is_this_bridge"])


class Triangle:
    """brA, brB (one ovslited) and a third bridge `third` ("kernel" or "ovs")."""

    def __init__(self, net: Network, daemon, mode: str, third: str = "kernel",
                 ab: str = "veth", priorities: dict | None = None, rundir: str | None = None,
                 host_stp: bool = True, daemon_b=None):
        prio = {"A": 32768, "B": 32768, "K": 32768, **(priorities or {})}
        self.net, self.daemon, self.mode = net, daemon, mode
        #: brB's daemon: brA's unless given (a patch pair needs one daemon)
        self.daemon_b = daemon_b or daemon
        n = net.name
        self.brA, self.brB = n("A"), n("B")
        self.ns = net.add_namespace("k")
        self.hA = net.add_host("hA", 1)
        self.hB = net.add_host("hB", 2)
        self.ip_k = f"{net.subnet}.3"
        # Loop links; names: ovslite end first
        self.ab, self.ba = n("ab"), n("ba")
        self.ak, self.ka, self.bk, self.kb = n("ak"), n("ka"), n("bk"), n("kb")
        if third == "kernel":
            self.k = KernelBridge(self.ns, "brk", prio["K"])
        else:
            self.k = OvsBridge(self.ns, "brk", prio["K"], rundir)
        veth(net, self.ak, self.ka, self.ns)
        veth(net, self.bk, self.kb, self.ns)
        self.k.add_port(self.ka)
        self.k.add_port(self.kb)
        run(["ip", "-n", self.ns, "addr", "add", f"{self.ip_k}/24", "dev", "brk"])
        run(["ip", "-n", self.ns, "link", "set", "brk", "up"])
        d, db = daemon, self.daemon_b
        for dd, br, p in ((d, self.brA, prio["A"]), (db, self.brB, prio["B"])):
            dd.ctl("add-br", br)
            dd.ctl("set-br", br, f"{mode}=on", f"{mode}-priority={p}", *OVSLITE_TIMERS[mode])
        if ab == "patch":
            assert db is d, "a patch pair joins bridges of one daemon"
            d.ctl("add-port", self.brA, self.ab, "--type", "patch", "--peer", self.ba)
            d.ctl("add-port", self.brB, self.ba, "--type", "patch", "--peer", self.ab)
        else:
            veth(net, self.ab, self.ba)
            d.ctl("add-port", self.brA, self.ab)
            db.ctl("add-port", self.brB, self.ba)
        d.ctl("add-port", self.brA, self.ak)
        db.ctl("add-port", self.brB, self.bk)
        host_settings = () if host_stp else ("stp-enable=off",)
        d.ctl("add-port", self.brA, self.hA.port, *host_settings)
        db.ctl("add-port", self.brB, self.hB.port, *host_settings)
        for h in (self.hA, self.hB):
            run(["ip", "link", "set", h.port, "up"])
        self.started = time.monotonic()

    def loop_states(self) -> dict[str, str]:
        """State of each of the six ports on the loop, by its interface name."""
        out = {}
        a = ovslite_states(self.daemon, self.brA)
        b = ovslite_states(self.daemon_b, self.brB)
        k = self.k.states()
        for name in (self.ab, self.ak):
            out[name] = a.get(name, "")
        for name in (self.ba, self.bk):
            out[name] = b.get(name, "")
        for name in (self.ka, self.kb):
            out[name] = k.get(name, "")
        return out

    def converged(self) -> dict[str, str] | None:
        """The loop's states once every port is forwarding but exactly one, else None."""
        states = self.loop_states()
        blocked = [p for p, s in states.items() if s != "forwarding"]
        if len(blocked) == 1 and states[blocked[0]] in BLOCKED:
            return states
        return None

    def wait_converged(self, timeout: float = 60.0) -> dict[str, str]:
        return wait_for(self.converged, timeout=timeout, interval=0.1, what="one blocked port")

    def root(self) -> str:
        """'A', 'B' or 'K': which bridge says it is the root (each asked itself)."""
        roots = [name for name, is_root in (
            ("A", ovslite_is_root(self.daemon, self.brA)),
            ("B", ovslite_is_root(self.daemon_b, self.brB)),
            ("K", self.k.is_root())) if is_root]
        assert len(roots) == 1, f"bridges that say they are the root: {roots}"
        return roots[0]

    def ping_k(self, host, count: int = 1, check: bool = False):
        return host.ping(self.ip_k, count=count, wait=1, interval=0.2, check=check)

    def close(self) -> None:
        self.k.stop()


class DoubledLink:
    """Two ovslited, one bridge each (brA with the lower priority: the root), joined
    by two veth links: a loop of two, where brB's port on one link is an alternate."""

    def __init__(self, net: Network, a, b, mode: str = "rstp", host_stp: bool = True):
        self.net, self.a, self.b = net, a, b
        self.hA, self.hB = net.add_host("hA", 1), net.add_host("hB", 2)
        self.links = [(net.name("x1"), net.name("y1")), (net.name("x2"), net.name("y2"))]
        for x, y in self.links:
            veth(net, x, y)
        self.brA, self.brB = net.name("A"), net.name("B")
        host_settings = () if host_stp else ("stp-enable=off",)
        for d, br, prio, host, ends in ((a, self.brA, 4096, self.hA, [x for x, _ in self.links]),
                                        (b, self.brB, 32768, self.hB, [y for _, y in self.links])):
            d.ctl("add-br", br)
            d.ctl("set-br", br, f"{mode}=on", f"{mode}-priority={prio}", *OVSLITE_TIMERS[mode])
            for p in ends:
                d.ctl("add-port", br, p)
            d.ctl("add-port", br, host.port, *host_settings)
            run(["ip", "link", "set", host.port, "up"])
        self.started = time.monotonic()

    def converged(self) -> dict[str, str] | None:
        """brB's states once one link's port forwards and the other's discards."""
        s = ovslite_states(self.b, self.brB)
        states = sorted(s.get(y, "") for _, y in self.links)
        return s if states[0] in BLOCKED and states[1] == "forwarding" else None

    def forwarding_link(self, states: dict) -> str:
        """brB's end of the link that carries the traffic."""
        return next(y for _, y in self.links if states[y] == "forwarding")
