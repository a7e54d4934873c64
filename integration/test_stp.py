"""Spanning tree against the real thing: a triangle of two ovslite bridges and the
Linux bridge's own 802.1D (timers at the kernel's minimum), or Open vSwitch 3.1
userspace with RSTP; and two ovslite daemons with RSTP on a doubled link.
Topologies in stp_topo.py. Each test checks what a user of the loop notices:
one port blocks, the bridge with the lowest priority is the root, a broadcast
arrives once, and traffic finds the other way when the forwarding link is cut.
Times are not asserted here (integration/bench/stpcost.py measures them)."""

from __future__ import annotations

import re
import shutil

import pytest

from .netns import run, wait_for, why_unusable
from .stp_topo import DoubledLink, Triangle, ovslite_states

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]

#: generous bounds: 802.1D needs 2 x forward delay (4 s here when ovslite is root),
#: plus max age after an indirect failure
CONVERGE = 60.0


def broadcast_copies(tri: Triangle, sender, receiver) -> int:
    """Copies of one broadcast (an ICMP echo to 10.77.0.255, which hosts ignore by
    default) from `sender` seen on `receiver`."""
    cap = receiver.capture("icmp and dst host 10.77.0.255", count=5, timeout=4)
    sender.run("ping", "-b", "-c", "1", "-W", "1", "10.77.0.255", check=False)
    _, out = cap.result()
    return len([line for line in out.splitlines() if "10.77.0.255" in line])


def forwarding_link_to_cut(tri: Triangle, states: dict) -> str:
    """An ovslite-side interface of a loop link whose both ends forward, on brA or brB
    toward the root (cutting it forces the other way)."""
    pairs = [(tri.ak, tri.ka), (tri.bk, tri.kb)]
    if tri.ab and tri.ab in states:
        pairs.append((tri.ab, tri.ba))
    for a, b in pairs:
        if states[a] == "forwarding" and states[b] == "forwarding":
            return a
    raise AssertionError(f"no forwarding link in {states}")


def check_triangle(tri: Triangle, expect_root: str, cut_ok: bool = True) -> None:
    states = tri.wait_converged(CONVERGE)
    assert tri.root() == expect_root, states
    # Hosts reach each other and the third bridge across the tree.
    wait_for(lambda: tri.hA.ping(tri.hB, count=1, check=False).returncode == 0,
             timeout=CONVERGE, what="hA reaching hB")
    wait_for(lambda: tri.ping_k(tri.hA).returncode == 0, timeout=CONVERGE, what="hA reaching brK")
    # One copy of a broadcast on each host: the loop is cut exactly once.
    assert broadcast_copies(tri, tri.hA, tri.hB) == 1
    if cut_ok:
        link = forwarding_link_to_cut(tri, states)
        run(["ip", "link", "set", link, "down"])
        wait_for(lambda: tri.ping_k(tri.hA).returncode == 0 and
                 tri.hA.ping(tri.hB, count=1, check=False).returncode == 0,
                 timeout=CONVERGE, what=f"connectivity after cutting {link}")


@pytest.mark.parametrize("lowest", ["K", "A"])
def test_kernel_stp_triangle(net, daemon, lowest):
    """The kernel bridge and two ovslite bridges, veth between all: root is whoever
    has the lowest priority, whichever side that is."""
    tri = Triangle(net, daemon, "stp", "kernel", priorities={lowest: 4096})
    try:
        check_triangle(tri, lowest)
    finally:
        tri.close()


def test_kernel_stp_triangle_with_a_patch_pair(net, daemon):
    tri = Triangle(net, daemon, "stp", "kernel", ab="patch", priorities={"B": 4096})
    try:
        states = tri.wait_converged(CONVERGE)
        assert tri.root() == "B", states
        assert broadcast_copies(tri, tri.hA, tri.hB) == 1
        # Cut the kernel's link to the root: the path then runs over the patch pair.
        run(["ip", "link", "set", tri.bk, "down"])
        wait_for(lambda: tri.ping_k(tri.hB).returncode == 0, timeout=CONVERGE,
                 what="hB reaching brK through the patch pair")
    finally:
        tri.close()


def test_open_vswitch_rstp_triangle(net, daemon, tmp_path):
    if not shutil.which("ovs-vswitchd"):
        pytest.skip("Open vSwitch is not installed (integration/bench/sw_ovs.py installs it)")
    rundir = tmp_path / "ovs"
    rundir.mkdir()
    tri = Triangle(net, daemon, "rstp", "ovs", priorities={"K": 4096}, rundir=str(rundir))
    try:
        check_triangle(tri, "K")
    finally:
        tri.close()


def test_two_ovslite_daemons_rstp(net, make_daemon):
    """Two daemons, two veth links between their bridges: one link's port is an
    alternate (discarding); cutting the other fails over to it."""
    a, b = make_daemon("a"), make_daemon("b")
    pair = DoubledLink(net, a, b)
    s = wait_for(pair.converged, timeout=CONVERGE, what="one alternate port on brB")
    # the root's ports all forward (its host port once found an edge, or after forward delay)
    wait_for(lambda: all(v == "forwarding" for v in ovslite_states(a, pair.brA).values()),
             timeout=CONVERGE, what="every port of the root forwarding")
    show = b.ctl("stp-show", pair.brB).stdout
    assert re.search(r"alternate\s+discarding", show), show
    assert "blocked (rstp: alternate, discarding)" in b.ctl("show").stdout
    hA, hB = pair.hA, pair.hB
    wait_for(lambda: hA.ping(hB, count=1, check=False).returncode == 0, timeout=CONVERGE,
             what="hA reaching hB")
    run(["ip", "link", "set", pair.forwarding_link(s), "down"])
    wait_for(lambda: hA.ping(hB, count=1, check=False).returncode == 0, timeout=CONVERGE,
             what="hA reaching hB over the other link")


def test_rstp_falls_back_to_the_kernels_802_1d(net, daemon):
    """ovslite in RSTP mode with the kernel bridge's 802.1D: the ports facing the
    kernel fall back to 802.1D, and the loop is still cut once."""
    tri = Triangle(net, daemon, "rstp", "kernel", priorities={"K": 4096})
    try:
        tri.wait_converged(CONVERGE)
        for br, port in ((tri.brA, tri.ak), (tri.brB, tri.bk)):
            # sends 802.1D BPDUs to the kernel once migrate time (3 s) has passed
            wait_for(lambda br=br, port=port: daemon.ctl_json("stp-show", br)[0]["ports"][port]
                     ["protocol"] == "stp", timeout=CONVERGE, what=f"{port} falling back to 802.1D")
        check_triangle(tri, "K")
    finally:
        tri.close()
