"""Spanning tree convergence and failover loss: `python -m integration.bench.stpcost [CASE...]`.

Cases (topologies in integration/stp_topo.py; the lowest priority is the third
bridge, brK, in the triangles and brA in the pair; one ovslited per ovslite
bridge):
- kernel-stp: two ovslite bridges and the Linux bridge's 802.1D, the kernel's
  timers at their minimum (forward delay 2 s, hello 1 s, max age 6 s);
- ovs-rstp: two ovslite bridges and Open vSwitch 3.1 userspace with RSTP;
- ovslite-rstp: two ovslited with RSTP, joined by two veth links.
ovslite's own timers are OVS's lowest (hello 1, max age 6, forward delay 4).

Traffic: trafgen in hA sends 60-byte UDP frames to hB at RATE frames/s for
the whole case, and hB pings hA 20 times a second (so its MAC is learned again
soon after a topology change flushes it, as with any host that talks); the host ports take no part in the tree (stp-enable=off), so
what is measured is the loop's links only. Counters are read in this process
every ms from the root-namespace veth ends: hA's port received = offered,
hB's port sent = delivered.
- start_s: from the moment the last port is added until frames reach hB;
- cut_outage_s: the longest time without a frame reaching hB in a window
  (15 s for 802.1D, 3 s for RSTP) from cutting the link that carries them
  (`ip link set down` on its ovslite end): frames queued before the cut and
  drained after it do not cut the gap short;
- cut_lost: frames offered but not delivered in a window around the cut,
  less what was already being lost before it (the sender's own shortfall).
Printed as one JSON object per case; nothing is asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..daemon import Daemon
from ..netns import Network, run
from ..stp_topo import DoubledLink, Triangle
from .measure import trafgen_config

RATE = 10_000
CASES = ("kernel-stp", "ovs-rstp", "ovslite-rstp")
TIMEOUT = 90.0


def _counter(ifname: str, name: str) -> int:
    with open(f"/sys/class/net/{ifname}/statistics/{name}") as f:
        return int(f.read())


class Stream:
    """trafgen hA -> hB at RATE frames/s, and the counters that tell what arrives."""

    def __init__(self, net: Network, hA, hB, workdir: str):
        self.hA, self.hB = hA, hB
        cfg = os.path.join(workdir, "stp.cfg")
        with open(cfg, "w") as f:
            f.write(trafgen_config(hA, hB))
        # hB answers nothing (the frames' address is unused), so without this its MAC,
        # flushed by every topology change, would stay unknown and every frame flooded
        hB.popen("ping", "-q", "-i", "0.05", hA.ip)
        self.proc = hA.popen("trafgen", "--no-sock-mem", "--notouch-irq", "--no-cpu-stats",
                             "--cpus", "1", "--rate", f"{RATE}pps", "--dev", hA.ifname,
                             "--conf", cfg)

    def offered(self) -> int:
        return _counter(self.hA.port, "rx_packets")

    def delivered(self) -> int:
        return _counter(self.hB.port, "tx_packets")

    def wait_flowing(self, since: float, timeout: float = TIMEOUT) -> float:
        """Seconds from `since` until delivered frames go up again."""
        start = self.delivered()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.delivered() > start:
                return time.monotonic() - since
            time.sleep(0.001)
        raise TimeoutError("frames did not reach hB")


def longest_gap(stream: Stream, since: float, window: float) -> float:
    """The longest time without a delivered frame from `since` to `since + window`
    (a backlog queued before a cut and drained after it does not end the gap early:
    the gap that traffic finding its new way ends is longer)."""
    last, changed, longest = stream.delivered(), since, 0.0
    end = since + window
    while (now := time.monotonic()) < end:
        value = stream.delivered()
        if value != last:
            longest = max(longest, now - changed)
            last, changed = value, now
        time.sleep(0.001)
    return max(longest, end - changed)


def _measure(stream: Stream, started: float, cut, window: float, settle: float = 3.0) -> dict:
    start_s = stream.wait_flowing(started)
    time.sleep(settle)  # steady flow
    o0, d0, t0 = stream.offered(), stream.delivered(), time.monotonic()
    time.sleep(1.0)
    o1, d1, t1 = stream.offered(), stream.delivered(), time.monotonic()
    shortfall = (o1 - o0) - (d1 - d0)  # lost without any cut (sender or switch)
    link = cut()
    cut_at = time.monotonic()
    o2, d2 = stream.offered(), stream.delivered()
    outage = longest_gap(stream, cut_at, window)
    o3, d3, t3 = stream.offered(), stream.delivered(), time.monotonic()
    lost = (o3 - o2) - (d3 - d2) - shortfall * (t3 - cut_at) / (t1 - t0)
    return {"start_s": round(start_s, 3), "cut_link": link, "cut_outage_s": round(outage, 4),
            "cut_lost": max(round(lost), 0), "window_s": round(t3 - cut_at, 3),
            "window_lost_raw": (o3 - o2) - (d3 - d2), "offered_fps": round((o1 - o0) / (t1 - t0)),
            "steady_shortfall_per_s": round(shortfall / (t1 - t0))}


def run_case(case: str, workdir: str) -> dict:
    net = Network()
    daemons = []
    third = None
    try:
        if case == "ovslite-rstp":
            a = Daemon(Path(workdir) / "a", label="a")
            b = Daemon(Path(workdir) / "b", label="b")
            for d in (a, b):
                d.workdir.mkdir(parents=True, exist_ok=True)
                daemons.append(d.start())
            pair = DoubledLink(net, a, b, host_stp=False)
            stream = Stream(net, pair.hA, pair.hB, workdir)
            started = pair.started

            def cut():
                states = wait_converged(pair.converged)
                link = pair.forwarding_link(states)
                run(["ip", "link", "set", link, "down"])
                return link
        else:
            for label in ("a", "b"):  # one daemon per bridge, as the pair has
                d = Daemon(Path(workdir) / label, label=label)
                d.workdir.mkdir(parents=True, exist_ok=True)
                daemons.append(d.start())
            kind = "kernel" if case == "kernel-stp" else "ovs"
            mode = "stp" if kind == "kernel" else "rstp"
            rundir = None
            if kind == "ovs":
                rundir = tempfile.mkdtemp(prefix="ovs", dir=workdir)
            tri = third = Triangle(net, daemons[0], mode, kind, priorities={"K": 4096},
                                   rundir=rundir, host_stp=False, daemon_b=daemons[1])
            stream = Stream(net, tri.hA, tri.hB, workdir)
            started = tri.started

            def cut():
                states = wait_converged(tri.converged)
                blocked = next(p for p, s in states.items() if s != "forwarding")
                run(["ip", "link", "set", tri.ak, "down"])  # brA's root port: toward brK
                # brA's own alternate takes over at once; brB's waits for max age first
                return "brA-brK (blocked before: " + blocked[-2:] + ")"
        # 802.1D may need max age + 2 x forward delay (6 + 4 s with the kernel's timers)
        result = _measure(stream, started, cut, 15.0 if case == "kernel-stp" else 3.0)
        return {"case": case, "rate_fps": RATE, **result}
    finally:
        if third is not None:
            third.close()
        for d in daemons:
            d.stop()
        net.close()


def wait_converged(predicate, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError("the tree did not converge")


def main(argv: list[str] | None = None) -> int:
    cases = (argv if argv is not None else sys.argv[1:]) or list(CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        print(f"stpcost: unknown case {unknown[0]} (known: {', '.join(CASES)})", file=sys.stderr)
        return 2
    for case in cases:
        if case == "ovs-rstp" and not shutil.which("ovs-vswitchd"):
            print(json.dumps({"case": case, "skipped": "Open vSwitch is not installed"}))
            continue
        with tempfile.TemporaryDirectory(prefix="stpcost") as workdir:
            print(json.dumps(run_case(case, workdir)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
