"""Network namespaces, veth pairs and background processes for integration tests.

Everything is made with the `ip` command and torn down by `Network.close()`,
which the `net` fixture calls even when a test fails. Names carry a per-run and
a per-test part ("ovl" + run hex + test counter + role) so two runs, or two
tests, never collide, and stay within IFNAMSIZ (15 bytes).

Only 10.x addresses are used, and only inside namespaces made here; the
root-namespace ends of the veth pairs get no address and IPv6 is disabled on
them, so no test traffic leaves these namespaces. Offloads are left at their
kernel defaults (no `ethtool -K`).
"""

from __future__ import annotations

import itertools
import os
import secrets
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

#: this pytest run's tag, part of every name made here
RUN_ID = secrets.token_hex(2)
PREFIX = "ovl"
_counter = itertools.count(1)


def _cmd_ok(*cmd: str) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def why_unusable() -> str | None:
    """None if this machine can run the integration tests, else the reason."""
    if os.geteuid() != 0:
        return "integration tests need root (network namespaces, veth, AF_PACKET)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if not _cmd_ok("ip", "netns", "list"):
        return "`ip netns` is unavailable"
    return None


def run(cmd: list[str], check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    """Run `cmd`, capturing text output; on failure raise with the output shown."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}"
        )
    return proc


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05, what: str = "condition"):
    """Poll `predicate` until it returns a true value; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def kill_process(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; reap it either way."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
    except ProcessLookupError:
        pass


@dataclass
class Host:
    """One network namespace with one veth end in it, addressed `ip`/`prefixlen`.

    `port` is the other end, in the root namespace, to be added to a bridge
    as a `system` port.
    """

    net: Network = field(repr=False)
    name: str  # short role, e.g. "h1"
    ns: str
    ifname: str  # inside the namespace
    port: str  # root-namespace end
    ip: str
    prefixlen: int = 24

    def exec_cmd(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *cmd]

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return run(self.exec_cmd(*cmd), check=check, timeout=timeout)

    def popen(self, *cmd: str, **kw) -> subprocess.Popen:
        """A background process in this namespace, killed at teardown."""
        return self.net.popen(self.exec_cmd(*cmd), **kw)

    @property
    def mac(self) -> str:
        return self.run("cat", f"/sys/class/net/{self.ifname}/address").stdout.strip().lower()

    def stat(self, counter: str) -> int:
        """A kernel counter of this host's interface, e.g. rx_packets."""
        out = self.run("cat", f"/sys/class/net/{self.ifname}/statistics/{counter}").stdout
        return int(out)

    def ping(self, dst: str | Host, count: int = 3, wait: float = 2, interval: float = 0.2,
             check: bool = True) -> subprocess.CompletedProcess:
        addr = dst.ip if isinstance(dst, Host) else dst
        return self.run("ping", "-n", "-q", "-c", str(count), "-W", str(wait),
                        "-i", str(interval), addr, check=check,
                        timeout=count * (interval + wait) + 10)

    def set_neighbor(self, other: Host) -> None:
        """A permanent ARP entry for `other`, so no ARP precedes our first frame."""
        self.run("ip", "neigh", "replace", other.ip, "lladdr", other.mac,
                 "dev", self.ifname, "nud", "permanent")

    def capture(self, bpf: str, count: int = 1, timeout: float = 10) -> Capture:
        """Start tcpdump on this host's interface; returns once it is listening."""
        proc = self.popen(
            "timeout", str(timeout), "tcpdump", "-n", "-l", "-i", self.ifname,
            "-c", str(count), bpf,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        cap = Capture(proc)
        cap.wait_listening()
        return cap


@dataclass
class Capture:
    """A bounded tcpdump run (wrapped in `timeout`)."""

    proc: subprocess.Popen
    stderr_head: str = ""

    def wait_listening(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        fd = self.proc.stderr.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                self.stderr_head += chunk.decode(errors="replace")
                if "listening on" in self.stderr_head:
                    return
            elif self.proc.poll() is not None:
                break
        raise AssertionError(f"tcpdump did not start listening:\n{self.stderr_head}")

    def result(self) -> tuple[int | None, str]:
        """Wait for tcpdump (bounded by its `timeout`), return (exit code, packets)."""
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out


@dataclass
class Network:
    """Namespaces, veth pairs and processes made by one test; `close()` removes all."""

    tag: str = field(default_factory=lambda: f"{RUN_ID}{next(_counter):03x}")
    subnet: str = "10.77.0"
    hosts: list[Host] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)

    def name(self, role: str) -> str:
        """An interface name unique to this run and test, <= 15 bytes."""
        name = f"{PREFIX}{self.tag}{role}"
        assert len(name.encode()) <= 15, name
        return name

    def add_namespace(self, role: str) -> str:
        ns = f"{PREFIX}-{self.tag}-{role}"
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        # No IPv6 inside: no router solicitations, MLD or DAD frames to flood
        # through the switch and disturb the counters the tests look at.
        for key in ("all", "default"):
            run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                 f"net.ipv6.conf.{key}.disable_ipv6=1"], check=False)
        return ns

    def add_host(self, role: str, index: int | None = None) -> Host:
        """A namespace with veth `ifname` in it at 10.77.0.<index>; peer left down in root ns."""
        index = index if index is not None else len(self.hosts) + 1
        ns = self.add_namespace(role)
        port = self.name(role)  # root-namespace end: the switch port
        inner = f"{port}i"
        run(["ip", "link", "add", port, "type", "veth", "peer", "name", inner, "netns", ns])
        self.links.append(port)
        try:
            with open(f"/proc/sys/net/ipv6/conf/{port}/disable_ipv6", "w") as f:
                f.write("1")
        except OSError:
            pass
        ip = f"{self.subnet}.{index}"
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", inner])
        run(["ip", "-n", ns, "link", "set", inner, "up"])
        host = Host(self, role, ns, inner, port, ip)
        self.hosts.append(host)
        return host

    def popen(self, cmd: list[str], **kw) -> subprocess.Popen:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(cmd, **kw)
        self.procs.append(proc)
        return proc

    def close(self) -> list[str]:
        """Remove everything; returns what could not be removed (for the caller to report)."""
        problems = []
        for proc in reversed(self.procs):
            kill_process(proc)
        for ns in self.namespaces:
            # Anything still running in a namespace made here was started by this test.
            pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for link in self.links:
            if os.path.exists(f"/sys/class/net/{link}"):
                proc = run(["ip", "link", "del", link], check=False)
                if proc.returncode != 0 and os.path.exists(f"/sys/class/net/{link}"):
                    problems.append(f"link {link}: {proc.stderr.strip()}")
        for ns in self.namespaces:
            proc = run(["ip", "netns", "del", ns], check=False)
            if proc.returncode != 0 and os.path.exists(f"/run/netns/{ns}"):
                problems.append(f"netns {ns}: {proc.stderr.strip()}")
        self.procs.clear()
        self.links.clear()
        self.namespaces.clear()
        return problems


def leftovers() -> list[str]:
    """Namespaces and links named by this run that still exist."""
    mine = f"{PREFIX}{RUN_ID}"
    found = []
    out = run(["ip", "netns", "list"], check=False).stdout
    found += [line.split()[0] for line in out.splitlines()
              if line.startswith(f"{PREFIX}-{RUN_ID}")]
    found += [name for name in os.listdir("/sys/class/net") if name.startswith(mine)]
    return found
