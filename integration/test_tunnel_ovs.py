"""Tunnel ports against Open vSwitch 3.1 userspace, started privately inside the
far host's namespace (hosts and helpers as in test_tunnel.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .netns import run, wait_for, why_unusable
from .test_tunnel import (
    UNDERLAY,
    SimHost,
    offloads_on,
    port_info,
    start_ovslite,
    tcp_bytes,
    two_hosts,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]


class PrivateOvs:
    """Open vSwitch 3.1 userspace inside a host's namespace, every file in `rundir`
    (as integration/bench/udpcost.py starts it), in OVS's documented layout for
    userspace tunnels: br-phy holds the underlay veth and the host's underlay
    address, br-int the container's port and the tunnel port."""

    def __init__(self, host: SimHost, rundir):
        from .bench.sw_ovs import SCHEMA
        self.host, self.rundir = host, str(rundir)
        self.env = {"OVS_RUNDIR": self.rundir, "OVS_DBDIR": self.rundir,
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
        return run(["ip", "netns", "exec", self.host.ns, *cmd], env={**os.environ, **self.env},
                   timeout=30).stdout

    def vsctl(self, *args: str) -> str:
        return self.run("ovs-vsctl", f"--db={self.db}", "--timeout=20", *args)

    def tunnel_layout(self, port_type: str, remote_ip: str) -> None:
        """br-phy with the host's underlay interface, br-int with its container's
        port and tunnel port t0 (key 100) to `remote_ip`; the address goes on br-phy."""
        host = self.host
        host.h("ip", "addr", "flush", "dev", host.underlay_ifname)
        self.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
                   "--", "add-port", "br-phy", host.underlay_ifname,
                   "--", "add-br", "br-int", "--", "set", "bridge", "br-int",
                   "datapath_type=netdev", "--", "add-port", "br-int", host.cport,
                   "--", "add-port", "br-int", "t0", "--", "set", "interface", "t0",
                   f"type={port_type}", f"options:remote_ip={remote_ip}", "options:key=100")

    def first_ping(self, a: SimHost, a_address: str, route: str, ovslite_state) -> None:
        """Give OVS host A's underlay MAC (it resolves remotes itself and drops what it
        sends before that), then wait for a first ping from A's container across.
        OVS installs its datapath flows on the first packets' upcalls; under load
        the first pings can be lost on its side (once seen in CI)."""
        appctl = ("ovs-appctl", "-t", f"{self.rundir}/vswitchd.ctl")
        a_mac = a.h("cat", f"/sys/class/net/{a.underlay_ifname}/address").stdout.strip()
        wait_for(lambda: route in self.run(*appctl, "ovs/route/show"), timeout=10,
                 what="OVS to learn the route to A")
        self.run(*appctl, "tnl/neigh/set", "br-phy", a_address, a_mac)
        try:
            wait_for(lambda: a.ping(self.host, count=1).returncode == 0, timeout=20,
                     interval=0.5, what="a first ping across")
        except AssertionError:
            raise AssertionError(
                f"no ping across: ovslite {ovslite_state()}\n"
                f"OVS ports: {self.run(*appctl, 'dpctl/show', '-s')}"
                f"\nOVS log: {(Path(self.rundir) / 'vswitchd.log').read_text()[-3000:]}") from None

    def stop(self) -> None:
        for ctl, extra in (("vswitchd.ctl", ["--cleanup"]), ("ovsdb.ctl", [])):
            try:
                self.run("ovs-appctl", "-t", f"{self.rundir}/{ctl}", "exit", *extra)
            except Exception:  # Network.close kills what is left in the namespace
                pass


@pytest.mark.parametrize("port_type", ["vxlan", "geneve", "gre"])
def test_ovslite_to_open_vswitch_userspace(net, make_daemon, tmp_path, port_type):
    if not shutil.which("ovs-vswitchd"):
        pytest.skip("Open vSwitch is not installed (integration/bench/sw_ovs.py installs it)")
    a, b = two_hosts(net)
    rundir = tmp_path / "ovs"
    rundir.mkdir()
    ovs = PrivateOvs(b, rundir)
    try:
        ovs.tunnel_layout(port_type, a.underlay_ip)
        b.h("ip", "addr", "add", f"{b.underlay_ip}/24", "dev", "br-phy")
        for dev in ("br-phy", "br-int"):
            b.h("ip", "link", "set", dev, "up")
        d = start_ovslite(make_daemon, a, port_type, b, "key=100")
        ovs.first_ping(a, a.underlay_ip, f"{UNDERLAY}.0/24 dev br-phy",
                       lambda: port_info(d, "t0"))
        # then every ping of a steady exchange
        assert a.ping(b).returncode == 0
        assert b.ping(a).returncode == 0
        # TCP from ovslite's side (offloads on): ovslite segments; OVS's side sends
        # only ACKs, with partial checksums OVS 3.1 forwards unfinished
        offloads_on(a)
        assert tcp_bytes(a, b) > 1_000_000
    finally:
        ovs.stop()
