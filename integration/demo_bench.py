"""The demo's thin adapter over the benchmark harness (integration/bench/).

The demo measures with the bench's own code, imported, never copied:

  integration.bench.measure    latency (ping p50/p99), tcp_throughput (iperf3 -J),
                               forwarding_rate (trafgen 64-byte frames, with the
                               switch's CPU per delivered frame from /proc)
  integration.bench.hosts      Host (what those functions take), connectivity
  integration.bench.resources  Resources (bookkeeping and guaranteed removal), run, cmdline
  integration.bench.runner     signals_ignored (for cleaning up without being cut short)
  integration.bench.report     write_json
  integration.bench.sw_ovslite Ovslite (a private ovslited, ready on its "started" log record)
  integration.bench.progress   Progress (the live status line)

What this file adds, because the bench does not expose it in the form the
demo needs:

- `DemoResources`: bench's `Resources` names namespaces "bench-<tag>-<role>"
  and links "b<tag><role>" and sweeps by those stems. The demo's names
  are "od<tag>-<role>" (readable when a user retypes a command), so this
  subclass overrides the two stems only; naming, sweeping, creation,
  process stopping and removal are the bench's.
- `make_host`: bench's `hosts.make_host` builds a host silently; the demo
  must echo every command so a user can repeat the topology by hand, so it
  runs the same steps through the demo's echoing shell and returns the
  bench's `Host`.
- `measure_link`: the demo's order and budget (one TCP stream, not 1 and 4)
  over the bench's measurement functions.
- `LiveStep`: bench's `Progress` redraws its line only when the step
  changes; on a terminal the demo also redraws it twice a second, so the
  elapsed time ticks during a 5-second iperf3 run.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from dataclasses import dataclass

from integration.bench import measure
from integration.bench.hosts import Host, connectivity
from integration.bench.progress import Progress
from integration.bench.report import write_json
from integration.bench.resources import CommandError, Resources, cmdline, run, wait_for
from integration.bench.runner import signals_ignored
from integration.bench.sw_ovslite import Ovslite

__all__ = ["CommandError", "DemoResources", "Host", "LiveStep", "Ovslite", "Progress", "Budget",
           "connectivity", "make_host", "measure_link", "run", "wait_for", "PREFIX",
           "demo_names_left", "stop_pid", "cmdline", "signals_ignored", "write_json"]

#: every namespace and link the demo makes is "od<tag>-<role>" (ovslite demo)
PREFIX = "od"
TAG_RE = re.compile(r"^[0-9a-f]{4}$")


class DemoResources(Resources):
    """bench's Resources with the demo's names (see the module docstring)."""

    @property
    def ns_stem(self) -> str:
        return f"{PREFIX}{self.tag}-"

    @property
    def link_stem(self) -> str:
        return f"{PREFIX}{self.tag}-"


def demo_names_left(tag: str) -> list[str]:
    """Namespaces and links of demo run `tag` that still exist."""
    res = DemoResources(tag)
    return res.sweep_namespaces() + res.sweep_links()


def make_host(res: Resources, sh, role: str, ip: str, prefixlen: int = 24) -> Host:
    """bench's hosts.make_host, every step echoed: namespace `role` with eth0 at `ip`.

    The root-namespace end (the returned Host's `port`) is left down, without
    IPv6; ovslited brings it up when it becomes a `system` port.
    """
    ns = res.ns_name(role)
    sh(["ip", "netns", "add", ns])
    res.namespaces.append(ns)
    sh(["ip", "-n", ns, "link", "set", "lo", "up"])
    # No IPv6 in the hosts: no router solicitations, MLD or DAD frames in the
    # captures or the counters, only the demo's own traffic.
    sh(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"])
    sh(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"])
    port = res.link_name(f"{role}-port")
    res.links.append(port)
    sh(["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
    sh(["sysctl", "-q", "-w", f"net.ipv6.conf.{port}.disable_ipv6=1"])
    sh(["ip", "-n", ns, "addr", "add", f"{ip}/{prefixlen}", "dev", "eth0"])
    sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
    mac = run(["ip", "netns", "exec", ns, "cat", "/sys/class/net/eth0/address"]).stdout.strip()
    return Host(res, role, ns, "eth0", port, ip, mac.lower())


@dataclass
class Budget:
    """How long each measurement runs: the full demo stays well under 2 minutes on 2 cores."""

    quick: bool

    @property
    def tcp_seconds(self) -> float:
        return 1 if self.quick else 5

    @property
    def rate_seconds(self) -> float:
        return 1 if self.quick else 3

    @property
    def warmup(self) -> float:
        return 0.3 if self.quick else 0.5

    @property
    def pings(self) -> int:
        return 200 if self.quick else 500  # one every 5 ms: 1 s or 2.5 s


def measure_link(h1: Host, h2: Host, pids: list[int], workdir: str, budget: Budget, step) -> dict:
    """Latency (idle switch first), one-stream TCP, then the 64-byte flood with CPU per frame."""
    m: dict = {}
    step(f"latency, {budget.pings} pings")
    m.update(measure.latency(h1, h2, budget.pings))
    step(f"TCP throughput (iperf3), {budget.tcp_seconds:g} s")
    m["tcp_gbps"] = measure.tcp_throughput(h1, h2, budget.tcp_seconds, 1)
    step(f"64-byte frames (trafgen), {budget.rate_seconds:g} s")
    time.sleep(0.2)  # let the TCP run's queues drain
    m.update(measure.forwarding_rate(h1, h2, pids, budget.rate_seconds, workdir, budget.warmup))
    return m


class LiveStep:
    """`with LiveStep(progress) as step:` a step callback whose line keeps ticking on a terminal."""

    def __init__(self, progress: Progress, interval: float = 0.5):
        self.progress = progress
        self.interval = interval
        self.text = "starting"
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __call__(self, text: str) -> None:
        with self.lock:
            self.text = text
            self.progress.step(text)

    def _tick(self) -> None:
        while not self.stop.wait(self.interval):
            with self.lock:
                if not self.stop.is_set():
                    self.progress.step(self.text)

    def __enter__(self) -> LiveStep:
        if self.progress.tty:
            self.thread = threading.Thread(target=self._tick, name="demo-progress", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        with self.lock:
            self.stop.set()
        if self.thread is not None:
            self.thread.join()


def stop_pid(pid: int, marker: str, timeout: float = 10.0) -> str | None:
    """SIGTERM process `pid` if its command line contains `marker`, SIGKILL if it lingers.

    For a daemon this process did not start (--teardown after --keep): the
    marker (its private socket path) makes sure a recycled pid is left alone.
    Returns a problem description, or None.
    """
    if marker not in cmdline(pid):
        return None  # already gone, or the pid reused by something else: not ours
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}") or _zombie(pid):
            return None
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return None
    return f"ovslited (pid {pid}) ignored SIGTERM for {timeout:g}s; killed"


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
