"""Reference switch (b): Open vSwitch with the userspace (netdev) datapath.

Design: a private ovsdb-server and ovs-vswitchd per case, every file they
make (database, sockets, pidfiles, logs, per-bridge .mgmt/.snoop sockets)
inside one temporary directory, so the bench never touches a system OVS and
two runs never share one. OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR point there too,
for the files OVS names itself.

userspace-tso-enable is written to the database *before* ovs-vswitchd starts
because OVS reads it once at start-up; the log line saying whether it took
effect is recorded in the case's notes. The veth ends are attached as
ordinary system ports (netdev-linux: an AF_PACKET socket each), the same
kind of I/O ovslite uses, so the comparison is like for like. The bridge
keeps OVS's default NORMAL flow, i.e. MAC learning.

Shutdown: `ovs-appctl exit --cleanup` then `exit` for ovsdb-server, with
SIGTERM/SIGKILL by pidfile as the fallback (both daemons --detach, so they
are not our children).

`netns`: both daemons run inside that namespace (the overlay section's hosts
each run their own OVS there); their sockets stay in the run directory, so
ovs-vsctl and ovs-appctl reach them from anywhere.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

from .hosts import pid_alive
from .resources import CommandError, Resources, run, wait_for
from .sw_ovslite import PortSpec

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def ensure_installed() -> None:
    """Install Debian's openvswitch-switch if ovs-vswitchd is missing."""
    if shutil.which("ovs-vswitchd") and shutil.which("ovsdb-server") and os.path.exists(SCHEMA):
        return
    run(["apt-get", "update", "-q"], timeout=300)
    run(["apt-get", "install", "-y", "-q", "openvswitch-switch"], timeout=600,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    # The package starts the system OVS service; we leave it alone and use a private one.


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


class Ovs:
    kind = "ovs"

    def __init__(self, res: Resources, rundir: str, netns: str | None = None):
        self.res = res
        self.dir = rundir
        self.inside = ["ip", "netns", "exec", netns] if netns else []
        self.db = f"unix:{rundir}/db.sock"
        self.env = {**os.environ, "OVS_RUNDIR": rundir, "OVS_DBDIR": rundir, "OVS_LOGDIR": rundir}
        self.notes: list[str] = []
        self.bridge = ""

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def vsctl(self, *args: str, no_wait: bool = False) -> str:
        cmd = ["ovs-vsctl", f"--db={self.db}", "--timeout=20"]
        if no_wait:
            cmd.append("--no-wait")
        return run([*cmd, *args], env=self.env, timeout=30).stdout

    def pids(self) -> list[int]:
        pid = _read_pid(self.path("vswitchd.pid"))
        return [pid] if pid else []

    def appctl(self, *args: str) -> str:
        return run(["ovs-appctl", "-t", self.path("vswitchd.ctl"), *args], env=self.env).stdout

    def start(self, tso: bool = True) -> None:
        conf = self.path("conf.db")
        run(["ovsdb-tool", "create", conf, SCHEMA], env=self.env)
        run([*self.inside, "ovsdb-server", conf, f"--remote=punix:{self.path('db.sock')}",
             f"--pidfile={self.path('ovsdb.pid')}", f"--unixctl={self.path('ovsdb.ctl')}",
             f"--log-file={self.path('ovsdb.log')}", "-vconsole:off", "--detach"], env=self.env)
        self.res.on_close("ovsdb-server", lambda: self._stop("ovsdb.ctl", "ovsdb.pid", cleanup=False))
        self.vsctl("init", no_wait=True)
        self.vsctl("set", "Open_vSwitch", ".", f"other_config:userspace-tso-enable={str(tso).lower()}",
                   no_wait=True)
        run([*self.inside, "ovs-vswitchd", self.db, f"--pidfile={self.path('vswitchd.pid')}",
             f"--unixctl={self.path('vswitchd.ctl')}", f"--log-file={self.path('vswitchd.log')}",
             "-vconsole:off", "--detach"], env=self.env)
        self.res.on_close("ovs-vswitchd", lambda: self._stop("vswitchd.ctl", "vswitchd.pid", cleanup=True))
        wait_for(lambda: self._log_has("userspace_tso") or self._log_has("bridge|INFO|ovs-vswitchd"),
                 10, "ovs-vswitchd to read its configuration")
        line = self._log_line("userspace_tso") or self._log_line("Segmentation")
        if line:
            self.notes.append(f"OVS log: {line.split('|')[-1].strip()}")
        else:
            self.notes.append("OVS log says nothing about userspace TSO"
                              + ("" if tso else " (userspace-tso-enable=false: OVS's default, off)"))

    def _log_line(self, needle: str) -> str:
        try:
            with open(self.path("vswitchd.log"), errors="replace") as f:
                for line in f:
                    if needle in line:
                        return line.strip()
        except OSError:
            pass
        return ""

    def _log_has(self, needle: str) -> bool:
        return bool(self._log_line(needle))

    def add_bridge(self, name: str, ports: list[PortSpec]) -> None:
        args = ["add-br", name, "--", "set", "bridge", name, "datapath_type=netdev"]
        for port in ports:
            args += ["--", "add-port", name, port.name]
            if port.type == "patch":
                args += ["--", "set", "interface", port.name, "type=patch",
                         f"options:peer={port.options['peer']}"]
        self.vsctl(*args)
        self.bridge = name
        for port in ports:
            if port.type == "system":
                run(["ip", "link", "set", port.name, "up"])

    def _stop(self, ctl: str, pidfile: str, cleanup: bool) -> None:
        pid = _read_pid(self.path(pidfile))
        if pid is None or not pid_alive(pid):
            return
        args = ["ovs-appctl", "-t", self.path(ctl), "exit"] + (["--cleanup"] if cleanup else [])
        try:
            run(args, env=self.env, timeout=10)
        except CommandError:
            pass  # fall back to signals below
        for sig, wait in ((None, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            if sig is not None:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not _alive_not_zombie(pid):
                    return
                time.sleep(0.05)
        raise CommandError(f"pid {pid} ({pidfile}) would not exit")


def _alive_not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start(res: Resources, bridges: dict[str, list[PortSpec]]) -> Ovs:
    """OVS with `bridges` (name -> ports: system or patch), all on the userspace datapath."""
    ensure_installed()
    ovs = Ovs(res, res.tempdir("ovs"))
    ovs.start()
    for name, ports in bridges.items():
        res.links.append(name)  # recorded before creation: OVS makes a tap named after it
        ovs.add_bridge(name, ports)
    return ovs
