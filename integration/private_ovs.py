"""Open vSwitch 3.1 userspace started privately inside a network namespace: its own
ovsdb-server and ovs-vswitchd, every file (database, sockets, pid files, logs) in one
run directory, as integration/bench/sw_ovs.py starts it for the bench. Tests build
their layouts on top (test_tunnel_ovs.TunnelOvs, stp_topo.OvsBridge)."""

from __future__ import annotations

import os

from .netns import run


class PrivateOvs:
    def __init__(self, ns: str, rundir):
        from .bench.sw_ovs import SCHEMA
        self.ns, self.rundir = ns, str(rundir)
        self.env = {**os.environ, "OVS_RUNDIR": self.rundir, "OVS_DBDIR": self.rundir,
                    "OVS_LOGDIR": self.rundir}
        self.db = f"unix:{self.rundir}/db.sock"
        self.run("ovsdb-tool", "create", f"{self.rundir}/conf.db", SCHEMA)
        self.run("ovsdb-server", f"{self.rundir}/conf.db", f"--remote=punix:{self.rundir}/db.sock",
                 f"--pidfile={self.rundir}/ovsdb.pid", f"--unixctl={self.rundir}/ovsdb.ctl",
                 f"--log-file={self.rundir}/ovsdb.log", "-vconsole:off", "--detach")
        self.vsctl("--no-wait", "init")
        self.run("ovs-vswitchd", self.db, f"--pidfile={self.rundir}/vswitchd.pid",
                 f"--unixctl={self.rundir}/vswitchd.ctl", f"--log-file={self.rundir}/vswitchd.log",
                 "-vconsole:off", "--detach")

    def run(self, *cmd: str) -> str:
        return run(["ip", "netns", "exec", self.ns, *cmd], env=self.env, timeout=30).stdout

    def vsctl(self, *args: str) -> str:
        return self.run("ovs-vsctl", f"--db={self.db}", "--timeout=20", *args)

    def stop(self) -> None:
        for ctl, extra in (("vswitchd.ctl", ["--cleanup"]), ("ovsdb.ctl", [])):
            try:
                self.run("ovs-appctl", "-t", f"{self.rundir}/{ctl}", "exit", *extra)
            except Exception:  # Network.close kills what is left in the namespace
                pass
