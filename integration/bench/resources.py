"""Everything one bench run creates, and its removal.

Design: a single `Resources` object per run records each namespace, link,
process, temporary directory and stop action the moment it is made, and
`close()` undoes them in reverse order of dependency (processes and daemons,
then links, then namespaces, then directories). `close()` never raises: it
returns the list of things it could not remove so the caller can report them.
As a safety net it also sweeps any namespace or link whose name carries this
run's tag, in case a failure struck between creating a thing and recording it.

Names: every namespace is "bench-<tag>-<role>" and every link "b<tag><role>",
where <tag> is 4 random hex digits, so two runs never collide and a leftover
is attributable to its run. Link names stay within IFNAMSIZ (15 bytes).

Long-running children are started in their own session (process group) so a
terminal Ctrl-C reaches only the bench, which then stops them in a known
order; they are stopped by process-group id, never by name.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable

NS_PREFIX = "bench-"
LINK_PREFIX = "b"


class CommandError(RuntimeError):
    pass


def run(cmd: list[str], check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    """Run `cmd` capturing text output; on failure raise CommandError showing it."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, **kw)
    except subprocess.TimeoutExpired:
        raise CommandError(f"timed out after {timeout}s: {' '.join(cmd)}") from None
    if check and proc.returncode != 0:
        raise CommandError(f"exit {proc.returncode}: {' '.join(cmd)}: "
                           f"{(proc.stderr or proc.stdout).strip()[:500]}")
    return proc


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise CommandError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _exited(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` for child `pid` to exit, leaving it unreaped (a zombie)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
    """Signal `proc`'s process group (it leads its own session), SIGKILL if it lingers."""
    if proc.returncode is not None:
        return  # already reaped: its group id may belong to someone else now
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    if not _exited(proc.pid, timeout):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _exited(proc.pid, timeout)
    # The leader is an unreaped zombie, so its group id is still ours: take any
    # straggler of the group with it (e.g. what `timeout` was running).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout)


def ns_exists(ns: str) -> bool:
    return os.path.exists(f"/run/netns/{ns}")


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


class Resources:
    def __init__(self, tag: str | None = None):
        self.tag = tag or secrets.token_hex(2)
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.dirs: list[str] = []
        #: (label, callable) run first at close, newest first: daemon shutdowns
        self.stoppers: list[tuple[str, Callable[[], None]]] = []
        self.closed = False

    # -- names --------------------------------------------------------------
    # Every namespace this run makes is ns_stem + role, every link link_stem + role;
    # close() also sweeps whatever starts with them.
    @property
    def ns_stem(self) -> str:
        return f"{NS_PREFIX}{self.tag}-"

    @property
    def link_stem(self) -> str:
        return f"{LINK_PREFIX}{self.tag}"

    def ns_name(self, role: str) -> str:
        return self.ns_stem + role

    def link_name(self, role: str) -> str:
        name = self.link_stem + role
        if len(name.encode()) > 15:
            raise ValueError(f"interface name {name!r} is longer than 15 bytes")
        return name

    # -- creation -----------------------------------------------------------
    def add_namespace(self, role: str) -> str:
        ns = self.ns_name(role)
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        # No IPv6 in a bench host: router solicitations, MLD and DAD frames
        # would be flooded through the switch and disturb the counters.
        for key in ("all", "default"):
            run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                 f"net.ipv6.conf.{key}.disable_ipv6=1"], check=False)
        return ns

    def add_link(self, name: str, cmd: list[str]) -> str:
        """Create root-namespace link `name` with `ip link add` args `cmd`; recorded first."""
        self.links.append(name)
        run(["ip", "link", "add", name, *cmd])
        return name

    def tempdir(self, role: str) -> str:
        path = tempfile.mkdtemp(prefix=f"ovslite-bench-{self.tag}-{role}-")
        self.dirs.append(path)
        return path

    def popen(self, cmd: list[str], **kw) -> subprocess.Popen:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def on_close(self, label: str, fn: Callable[[], None]) -> None:
        self.stoppers.append((label, fn))

    # -- removal ------------------------------------------------------------
    def release(self, proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        """Stop one process now and forget it."""
        stop_group(proc, sig)
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> list[str]:
        """Remove everything made so far (idempotent). Returns what could not be removed."""
        problems: list[str] = []
        for label, fn in reversed(self.stoppers):
            try:
                fn()
            except Exception as exc:  # keep going: the rest must still be removed
                problems.append(f"{label}: {exc}")
        self.stoppers.clear()
        for proc in reversed(self.procs):
            try:
                stop_group(proc)
            except Exception as exc:
                problems.append(f"process {proc.pid}: {exc}")
        self.procs.clear()
        # Processes still inside our namespaces were started by this run.
        for ns in self.namespaces:
            if ns_exists(ns):
                pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
        for link in sorted(set(self.links) | set(self.sweep_links())):
            if link_exists(link):
                proc = run(["ip", "link", "del", link], check=False)
                if proc.returncode != 0 and link_exists(link):
                    problems.append(f"link {link}: {proc.stderr.strip()}")
        self.links.clear()
        for ns in sorted(set(self.namespaces) | set(self.sweep_namespaces())):
            if ns_exists(ns):
                proc = run(["ip", "netns", "del", ns], check=False)
                if proc.returncode != 0 and ns_exists(ns):
                    problems.append(f"netns {ns}: {proc.stderr.strip()}")
        self.namespaces.clear()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
            if os.path.exists(d):
                problems.append(f"directory {d}")
        self.dirs.clear()
        self.closed = True
        return problems

    def sweep_links(self) -> list[str]:
        return [n for n in os.listdir("/sys/class/net") if n.startswith(self.link_stem)]

    def sweep_namespaces(self) -> list[str]:
        out = run(["ip", "netns", "list"], check=False).stdout
        return [line.split()[0] for line in out.splitlines() if line.startswith(self.ns_stem)]


def cmdline(pid: int | str) -> str:
    """Process `pid`'s command line, its arguments joined by spaces ("" if it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def leftovers(tag: str) -> list[str]:
    """Namespaces, links, processes and temp dirs of run `tag` that still exist."""
    res = Resources(tag)
    found = res.sweep_namespaces() + res.sweep_links()
    marker = f"ovslite-bench-{tag}-"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        cmd = cmdline(pid)
        if marker in cmd:
            found.append(f"process {pid}: {cmd.strip()[:120]}")
    tmp = tempfile.gettempdir()
    found += [os.path.join(tmp, d) for d in os.listdir(tmp) if d.startswith(marker)]
    return found
