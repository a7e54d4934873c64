"""Boot a minimal Debian under systemd-nspawn, to test ovslite as a systemd service.

    tree = build_tree()               # debootstrap once, cached (~1 min)
    wheels = build_wheelhouse()       # ovslite's wheel + its dependencies
    with Container(tree, binds={wheels: "/mnt/wheels"}) as c:
        c.run("systemctl", "is-system-running")

The tree is built with debootstrap into CACHE_DIR (default
/var/cache/ovslite-test, or $OVSLITE_TEST_CACHE) from the Debian mirror this
machine's apt uses, and never modified afterwards: each container boots it
with --volatile=overlay, so every change lives in a tmpfs and is gone when the
container stops.

How the container is run where PID 1 is not systemd (this project's build VM):
systemd-nspawn is an ordinary child process with --register=no --keep-unit
(no machined, no host bus), in a cgroup of its own that this module makes and
removes; on a host with cgroups v1+v2 (hybrid) the container is given a
unified hierarchy (SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1), so its systemd uses
BPF device and IP filters as on a modern host. Commands run inside with
`nsenter -t LEADER -a` (all namespaces of the container's PID 1); machinectl
and `systemd-run --machine` would need systemd on the host. The container has
its own network namespace (--private-network: loopback only) and /dev/net/tun.

ready() installs the missing tools (as root, with apt-get), then asks
why_unusable() why containers cannot be booted here (None if they can);
tests skip with that reason, which is then what the machine truly lacks.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get("OVSLITE_TEST_CACHE", "/var/cache/ovslite-test"))
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: on top of debootstrap's minbase (which has util-linux, passwd, coreutils)
PACKAGES = ["systemd", "systemd-sysv", "dbus", "iproute2", "python3", "python3-venv",
            "iputils-ping", "make", "procps"]
#: units that only slow the boot or fail without a console
MASK = ["console-getty.service", "getty@.service", "apt-daily.timer",
        "apt-daily-upgrade.timer", "e2scrub_all.timer", "dpkg-db-backup.timer",
        "systemd-timesyncd.service"]
#: bump to rebuild cached trees after changing how they are made
TREE_VERSION = 1
BOOT_TIMEOUT = 90.0
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBOOTSTRAP_TIMEOUT = 900
PR_SET_PDEATHSIG = 1
#: machine (and cgroup) names: NAME_PREFIX + 8 hex digits
NAME_PREFIX = "ovslite-test-"
#: (command, Debian package) the containers need; the Makefile's DEB_TOOLS has them too
TOOLS = (("systemd-nspawn", "systemd-container"), ("debootstrap", "debootstrap"),
         ("nsenter", "util-linux"))


class Unusable(Exception):
    """A container cannot be built or booted here; the message says why."""


def _run(cmd: list[str], timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    proc = subprocess.run(cmd, timeout=timeout, check=False, **kw)
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc


def host_has_systemd() -> bool:
    """Whether PID 1 of this machine is systemd (then machined and the bus exist)."""
    return os.path.isdir("/run/systemd/system")


def why_unusable() -> str | None:
    """Why containers cannot be booted here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    if sys.platform != "linux":
        return "needs Linux"
    for tool, package in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install {package})"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun does not exist"
    if _cgroup2_mount() is None:
        return "no cgroup2 file system mounted (systemd in the container needs it)"
    return None


def ready() -> str | None:
    """Install what is missing, then say why containers cannot be booted here, or None.

    In this order: asked first, why_unusable() would report the very tools
    ensure_tools() installs, and they would never be installed.
    """
    return ensure_tools() or why_unusable()


def ensure_tools() -> str | None:
    """apt-get install the TOOLS' packages that are missing; why not, or None."""
    missing = sorted({pkg for tool, pkg in TOOLS if shutil.which(tool) is None})
    if not missing or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        _run(["apt-get", "update", "-q"], timeout=300, env=env)
        _run(["apt-get", "install", "-y", "-q", *missing], timeout=600, env=env)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"cannot install {' '.join(missing)}: {_short(exc)}"
    return None


def _short(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-3:]
        return f"{shlex.join(map(str, exc.cmd))} exited {exc.returncode}: {' | '.join(tail)}"
    return str(exc)


# -- the Debian tree -----------------------------------------------------------

def apt_mirror() -> str:
    """The Debian archive this machine's apt uses (it is the one that works here)."""
    override = os.environ.get("OVSLITE_TEST_MIRROR")
    if override:
        return override
    texts = []
    extra = sorted(p for p in Path("/etc/apt/sources.list.d").glob("*")
                   if p.suffix in (".list", ".sources"))  # what apt reads
    for path in [Path("/etc/apt/sources.list"), *extra]:
        with contextlib.suppress(OSError):
            texts.append(path.read_text())
    for text in texts:
        # deb822: URIs: ... with Suites: containing the suite (not -security)
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1).rstrip("/")
        # one-line: deb [opts] URI SUITE components
        for m in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
            if m.group(2) == SUITE:
                return m.group(1).rstrip("/")
    return DEFAULT_MIRROR


def tree_path() -> Path:
    key = hashlib.sha256(f"{TREE_VERSION} {SUITE} {' '.join(PACKAGES)} {' '.join(MASK)}".encode())
    return CACHE_DIR / f"{SUITE}-{key.hexdigest()[:10]}"


@contextlib.contextmanager
def _locked(name: str):
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def build_tree(log=print) -> Path:
    """The cached Debian tree, built first if missing. Raises Unusable on failure."""
    tree = tree_path()
    if (tree / ".ovslite-tree-ok").exists():
        return tree
    with _locked("tree"):
        if (tree / ".ovslite-tree-ok").exists():
            return tree
        why = ensure_tools()
        if why:
            raise Unusable(why)
        work = Path(f"{tree}.tmp")
        if work.exists():
            shutil.rmtree(work)
        mirror = apt_mirror()
        log(f"debootstrap {SUITE} from {mirror} into {work} (cached for later runs)")
        t0 = time.monotonic()
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
               SUITE, str(work), mirror]
        try:
            _run(cmd, timeout=DEBOOTSTRAP_TIMEOUT)
        except (subprocess.SubprocessError, OSError) as exc:
            shutil.rmtree(work, ignore_errors=True)
            log_file = work / "debootstrap" / "debootstrap.log"
            raise Unusable(f"debootstrap failed ({_short(exc)}; see {log_file})") from None
        _prepare(work)
        (work / ".ovslite-tree-ok").write_text(f"{mirror}\n")
        work.rename(tree)
        log(f"tree ready in {time.monotonic() - t0:.0f}s: {tree}")
        return tree


def _prepare(root: Path) -> None:
    """Make the tree boot quickly and quietly under nspawn."""
    for unit in MASK:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    # Each container gets a fresh machine id (a new boot of a new machine).
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").write_text("ovslite-test\n")


# -- wheels --------------------------------------------------------------------

def dependencies() -> list[str]:
    with open(REPO / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def build_wheelhouse(python: str | None = None, log=print) -> Path:
    """A directory with ovslite's wheel (built now) and its dependencies' wheels.

    Dependencies are downloaded once with pip and kept in CACHE_DIR/wheels; a
    later run works offline as long as they still satisfy pyproject.toml.
    """
    python = python or sys.executable
    house = CACHE_DIR / "wheels"
    with _locked("wheels"):
        house.mkdir(parents=True, exist_ok=True)
        for old in house.glob("ovslite-*.whl"):
            old.unlink()
        build = Path(tempfile.mkdtemp(prefix="ovslite-wheel-"))
        try:
            _run([python, "-m", "pip", "wheel", "-q", "--no-deps",
                  "-w", str(house), str(REPO)], timeout=300, cwd=build)
        except subprocess.CalledProcessError as exc:
            raise Unusable(f"cannot build the ovslite wheel: {_short(exc)}") from None
        finally:
            shutil.rmtree(build, ignore_errors=True)
        deps = dependencies()
        offline = [python, "-m", "pip", "download", "-q", "--only-binary=:all:", "--no-index",
                   "--find-links", str(house), "-d", str(house), *deps]
        if _run(offline, timeout=120, check=False).returncode != 0:
            log("downloading dependency wheels: " + " ".join(deps))
            try:
                _run([python, "-m", "pip", "download", "-q", "--only-binary=:all:",
                      "-d", str(house), *deps], timeout=600)
            except subprocess.CalledProcessError as exc:
                raise Unusable(f"cannot download dependency wheels: {_short(exc)}") from None
    return house


# -- containers ----------------------------------------------------------------

def _cgroup2_mount() -> Path | None:
    """Where the cgroup2 hierarchy is mounted: /sys/fs/cgroup (unified) or .../unified."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    for line in mounts:
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    return None


def _own_cgroup2() -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    return "/"


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _sweep_cgroups(parent: Path) -> None:
    """Remove empty cgroups left by containers whose test process was killed."""
    for path in parent.glob(f"{NAME_PREFIX}*"):
        try:
            if time.time() - path.stat().st_mtime < 60:
                continue  # maybe another run's, about to be used
            busy = any(p.read_text().strip() for p in path.rglob("cgroup.procs"))
        except OSError:
            continue
        if not busy:
            Container._remove_cgroup(path)


class Container:
    """One booted container of `tree`; changes go to a tmpfs overlay.

    `binds` maps host paths to container paths, mounted read-only.
    Use as a context manager: stop() always runs, even after a failed start.
    """

    def __init__(self, tree: Path, binds: dict | None = None, name: str | None = None,
                 log_dir: Path | None = None):
        self.tree = Path(tree)
        self.binds = dict(binds or {})
        self.name = name or f"{NAME_PREFIX}{uuid.uuid4().hex[:8]}"
        self.log_path = Path(log_dir or tempfile.gettempdir()) / f"{self.name}.console"
        self.proc: subprocess.Popen | None = None
        self.leader: int | None = None
        self.cgroup: Path | None = None

    # -- lifecycle -----------------------------------------------------------
    def command(self) -> list[str]:
        cmd = ["systemd-nspawn", "--quiet", "-D", str(self.tree), "--boot",
               f"--machine={self.name}", "--volatile=overlay", "--private-network",
               "--bind=/dev/net/tun", "--console=read-only", "--register=no",
               # let the container's systemd attach BPF device and IP filters to
               # units (DeviceAllow=, IPAddressDeny=): without these nspawn's
               # seccomp filter denies bpf(2) and they silently do nothing
               "--capability=CAP_BPF", "--system-call-filter=bpf"]
        if not host_has_systemd():
            cmd.append("--keep-unit")  # no systemd to make a scope: stay in our cgroup
        else:
            cmd.append("--property=DeviceAllow=/dev/net/tun rwm")
        for src, dst in self.binds.items():
            cmd.append(f"--bind-ro={src}:{dst}")
        return cmd

    def start(self, timeout: float = BOOT_TIMEOUT) -> None:
        env = dict(os.environ)
        procs = None
        if not host_has_systemd():
            cg_root = _cgroup2_mount()
            if cg_root is None:
                raise Unusable("no cgroup2 file system mounted")
            if cg_root != Path("/sys/fs/cgroup"):
                env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"  # hybrid host
            parent = cg_root / _own_cgroup2().lstrip("/")
            _sweep_cgroups(parent)
            self.cgroup = parent / self.name
            self.cgroup.mkdir()
            procs = str(self.cgroup / "cgroup.procs")
        libc = ctypes.CDLL(None, use_errno=True)

        def preexec():
            # If this process dies without stop(), nspawn gets SIGTERM: the container halts.
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if procs is not None:
                with open(procs, "w") as f:
                    f.write("0")

        self.log_file = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self.log_file, stderr=subprocess.STDOUT,
                                     env=env, preexec_fn=preexec, start_new_session=True)
        deadline = time.monotonic() + timeout
        self.leader = self._find_leader(deadline)
        # Wait for the boot to finish (degraded is fine: we test one service).
        while True:
            state = self.run("systemctl", "is-system-running", check=False, timeout=30).stdout.strip()
            if state in ("running", "degraded"):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise Unusable(f"container did not boot (state {state or 'unknown'}): "
                               f"{self.console_tail()}")
            time.sleep(0.3)

    def _find_leader(self, deadline: float) -> int:
        """The container's PID 1, seen from here: nspawn's descendant in a new pid namespace."""
        own_ns = os.readlink("/proc/self/ns/pid")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unusable(f"systemd-nspawn exited {self.proc.returncode}: {self.console_tail()}")
            kids = _children()
            todo = list(kids.get(self.proc.pid, []))
            while todo:
                pid = todo.pop()
                try:
                    if os.readlink(f"/proc/{pid}/ns/pid") != own_ns:
                        return pid
                except OSError:
                    continue
                todo.extend(kids.get(pid, []))
            time.sleep(0.1)
        raise Unusable(f"container {self.name} did not start: {self.console_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """Power the container off (SIGTERM to nspawn), SIGKILL if it does not go."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)  # nspawn asks the container to halt
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if self.leader is not None:  # PID 1 of the container dies with nspawn, but make sure
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.leader, signal.SIGKILL)
        if self.cgroup is not None:
            self._remove_cgroup(self.cgroup)
            self.cgroup = None
        if getattr(self, "log_file", None) is not None:
            self.log_file.close()
            self.log_file = None
        shutil.rmtree(f"/run/systemd/nspawn/propagate/{self.name}", ignore_errors=True)
        self.proc = None

    @staticmethod
    def _remove_cgroup(path: Path) -> None:
        """Kill what is left in `path` and remove it and its children, deepest first."""
        if not path.exists():
            return
        kill = path / "cgroup.kill"
        if kill.exists():
            with contextlib.suppress(OSError):
                kill.write_text("1")
        deadline = time.monotonic() + 10
        while path.exists() and time.monotonic() < deadline:
            dirs = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for d in [*dirs, path]:
                with contextlib.suppress(OSError):
                    d.rmdir()
            if path.exists():
                time.sleep(0.1)

    def __enter__(self) -> Container:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- inside --------------------------------------------------------------
    def exec_cmd(self, *cmd: str, user: str | None = None) -> list[str]:
        """argv that runs `cmd` inside the container (as `user`, with that user's groups)."""
        assert self.leader is not None, "container not started"
        # A clean environment: nsenter would pass on this process's (PIP_*, VIRTUAL_ENV...).
        prefix = ["nsenter", "-t", str(self.leader), "-a", "--", "env", "-i", f"PATH={PATH}",
                  "LANG=C.UTF-8", "HOME=/root"]
        if user is not None:
            prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                       "--reset-env", "--"]
        return prefix + list(cmd)

    def run(self, *cmd: str, check: bool = True, timeout: float = 60, user: str | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
        return _run(self.exec_cmd(*cmd, user=user), timeout=timeout, check=check, input=input)

    def sh(self, script: str, check: bool = True, timeout: float = 60,
           user: str | None = None) -> subprocess.CompletedProcess:
        return self.run("sh", "-ec", script, check=check, timeout=timeout, user=user)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """systemctl show -p PROP... as a dict."""
        out = self.run("systemctl", "show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for(self, predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    def console_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:])
