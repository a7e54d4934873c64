"""Run ovslited and ovslite-ctl for integration tests."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .netns import kill_process

STOP_TIMEOUT = 10.0
START_TIMEOUT = 15.0
#: AF_UNIX sun_path is 108 bytes including the NUL
MAX_SOCKET_PATH = 100


def daemon_cmd() -> list[str]:
    return [sys.executable, "-m", "ovslite"]


def ctl_cmd() -> list[str]:
    script = Path(sys.executable).parent / "ovslite-ctl"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from ovslite_ctl.cli import main; sys.exit(main())"]


def socket_accepts(path: str) -> bool:
    """True if something listens on the AF_UNIX socket `path`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return True
    except OSError as exc:
        # A listener of another socket type still means the daemon is up.
        return exc.errno == errno.EPROTOTYPE
    finally:
        s.close()


def log_lines_removed(text: str) -> list[str]:
    """The non-empty lines of `text` that are not JSON log records."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        if not (isinstance(rec, dict) and "event" in rec):
            out.append(line)
    return out


def log_records(text: str) -> list[dict]:
    """The JSON log records in `text`."""
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "event" in rec:
            out.append(rec)
    return out


class Daemon:
    """One ovslited process with its own database and control socket."""

    def __init__(self, workdir: Path, db: Path | None = None, sock: str | None = None,
                 label: str = "ovslited", netns: str | None = None):
        self.workdir = Path(workdir)
        #: run the daemon inside this network namespace (`ip netns exec`), e.g. a
        #: simulated host; ovslite-ctl reaches it through its socket file anyway
        self.netns = netns
        self.label = label
        self.db = Path(db) if db is not None else self.workdir / "conf.db"
        if sock is None:
            sock = str(self.workdir / "ovslite.sock")
            if len(sock.encode()) > MAX_SOCKET_PATH:
                sock = os.path.join(tempfile.mkdtemp(prefix="ovl"), "ovslite.sock")
        self.socket = sock
        self.stderr_path = self.workdir / f"{label}.stderr"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.history: list[str] = []  # stderr of earlier runs (before restarts)

    # -- process control ----------------------------------------------------
    def spawn(self) -> subprocess.Popen:
        """Start the process without waiting for it (stderr to self.stderr_path)."""
        if self.stderr_path.exists():
            self.history.append(self.stderr_path.read_text(errors="replace"))
        self.starts += 1
        with open(self.stderr_path, "wb") as err:
            prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
            self.proc = subprocess.Popen(
                [*prefix, *daemon_cmd(), "--db", str(self.db), "--socket", self.socket,
                 "--log-format", "json", "--log-level", "debug"],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err,
            )
        return self.proc

    def start(self, timeout: float = START_TIMEOUT) -> Daemon:
        proc = self.spawn()
        deadline = time.monotonic() + timeout
        while not socket_accepts(self.socket):
            if proc.poll() is not None:
                raise AssertionError(
                    f"{self.label} exited with {proc.returncode} before its socket "
                    f"accepted connections; stderr:\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.label}: socket {self.socket} did not accept connections "
                    f"within {timeout}s; stderr:\n{self.stderr()}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, SIGKILL after `timeout`; returns the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
                raise AssertionError(
                    f"{self.label} did not exit within {timeout}s of SIGTERM; killed") from None
        return proc.returncode

    def restart(self) -> Daemon:
        rc = self.stop()
        assert rc == 0, f"{self.label} exited {rc} on SIGTERM; stderr:\n{self.stderr()}"
        return self.start()

    def kill(self) -> None:
        if self.proc is not None:
            kill_process(self.proc, STOP_TIMEOUT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cpu_seconds(self, over: float) -> float:
        """CPU time (user + system) the daemon uses in the next `over` seconds."""

        def ticks() -> int:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime, stime

        before = ticks()
        time.sleep(over)
        return (ticks() - before) / os.sysconf("SC_CLK_TCK")

    def errors_logged(self) -> list[dict]:
        """Log records at level error or above in the current run."""
        return [r for r in log_records(self.stderr())
                if r.get("level") in ("error", "critical", "exception")]

    def all_stderr(self) -> str:
        parts = [*self.history, self.stderr()]
        return "\n--- restart ---\n".join(p for p in parts if p)

    # -- CLI ----------------------------------------------------------------
    def ctl(self, *args: str, check: bool = True, fmt: str | None = None,
            timeout: float = 20) -> subprocess.CompletedProcess:
        """Run ovslite-ctl against this daemon's socket."""
        cmd = [*ctl_cmd(), "--socket", self.socket]
        if fmt is not None:
            cmd += ["--format", fmt]
        cmd += list(args)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"ovslite-ctl failed (exit {proc.returncode}): {' '.join(args)}\n"
                f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}")
        return proc

    def ctl_json(self, *args: str):
        return json.loads(self.ctl(*args, fmt="json").stdout)


# -- reading CLI output ---------------------------------------------------------
def _walk(obj):
    """Every dict inside a JSON document, depth first."""
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)


def fdb_entries(d: Daemon, bridge: str) -> dict[str, str]:
    """`fdb-show BRIDGE` as {mac (lower case): port name}."""
    doc = d.ctl_json("fdb-show", bridge)
    out = {}
    for rec in _walk(doc):
        mac = rec.get("mac") or rec.get("address")
        port = rec.get("port") or rec.get("port_name")
        if isinstance(mac, str) and isinstance(port, str):
            out[mac.lower()] = port
    return out


def port_stats(d: Daemon, bridge: str) -> dict[str, dict]:
    """`dump-ports BRIDGE` as {port name: {counter: value}}."""
    doc = d.ctl_json("dump-ports", bridge)
    out = {}
    if isinstance(doc, dict) and all(isinstance(v, dict) for v in doc.values()):
        for name, rec in doc.items():  # {"port": {"tx_packets": ...}}
            if "tx_packets" in rec or "tx_packets" in rec.get("stats", {}):
                out[name] = rec.get("stats", rec)
    for rec in _walk(doc):
        name = rec.get("name") or rec.get("port")
        if isinstance(name, str):
            stats = rec.get("stats", rec)
            if isinstance(stats, dict) and "tx_packets" in stats:
                out[name] = stats
    return out
