"""Tunnel ports against Open vSwitch 3.1 userspace, started privately inside the
far host's namespace (hosts and helpers as in test_tunnel.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .netns import wait_for, why_unusable
from .private_ovs import PrivateOvs
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


class TunnelOvs(PrivateOvs):
    """Open vSwitch inside a host's namespace in OVS's documented layout for
    userspace tunnels: br-phy holds the underlay veth and the host's underlay
    address, br-int the container's port and the tunnel port."""

    def __init__(self, host: SimHost, rundir):
        super().__init__(host.ns, rundir)
        self.host = host

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



@pytest.mark.parametrize("port_type", ["vxlan", "geneve", "gre"])
def test_ovslite_to_open_vswitch_userspace(net, make_daemon, tmp_path, port_type):
    if not shutil.which("ovs-vswitchd"):
        pytest.skip("Open vSwitch is not installed (integration/bench/sw_ovs.py installs it)")
    a, b = two_hosts(net)
    rundir = tmp_path / "ovs"
    rundir.mkdir()
    ovs = TunnelOvs(b, rundir)
    try:
        ovs.tunnel_layout(port_type, a.underlay_ip)
        b.h("ip", "addr", "add", f"{b.underlay_ip}/24", "dev", "br-phy")
        for dev in ("br-phy", "br-int"):
            b.h("ip", "link", "set", dev, "up")
        # A's underlay veth stands for a wire, which carries finished segments: a veth
        # would pass the kernel vxlan device's 64 KB UDP-tunnel GSO packets (vxlan
        # sends through one, ovslite/netdev/kvxlan.py) whole and with partial
        # checksums, which OVS 3.1 userspace, reading the veth with AF_PACKET, does
        # not take. The containers' offloads stay on.
        a.h("ethtool", "-K", a.underlay_ifname, "tx", "off")
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
