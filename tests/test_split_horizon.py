"""Split horizon in the core: frames from a tunnel port never leave by another
tunnel port of the same bridge (a full mesh of hosts has no loops), but do
reach every other port, and every port reaches the tunnels."""

import pytest
from helpers import BCAST, MCAST, A, B, X

from ovslite.bridge import Bridge, Port
from ovslite.vnet import ethernet


class TunnelLike:
    """What the core looks at on a tunnel netdev: the class attribute alone."""

    split_horizon = True


def pkt(dst: bytes, src: bytes) -> bytes:
    return ethernet(dst + src + b"\x08\x00")


def mesh_bridge() -> tuple[Bridge, Port, Port, Port, Port]:
    br = Bridge("br-tun")
    t1 = br.add_port(Port("t1", "vxlan", TunnelLike()))
    t2 = br.add_port(Port("t2", "geneve", TunnelLike()))
    p1 = br.add_port(Port("p1"))
    p2 = br.add_port(Port("p2"))
    for p in (t1, t2, p1, p2):
        br.set_port_state(p, True)
    return br, t1, t2, p1, p2


def names(out: dict) -> set[str]:
    return {p.name for p in out}


def test_tunnel_netdev_makes_a_split_horizon_port():
    assert Port("t", "vxlan", TunnelLike()).split_horizon
    assert not Port("p").split_horizon


@pytest.mark.parametrize("dst", [BCAST, MCAST, X], ids=["broadcast", "multicast", "unknown"])
def test_flood_from_a_tunnel_reaches_local_ports_only(dst):
    br, t1, t2, p1, p2 = mesh_bridge()
    assert names(br.forward(t1, [pkt(dst, A)], 0.0)) == {"p1", "p2"}


@pytest.mark.parametrize("dst", [BCAST, MCAST, X], ids=["broadcast", "multicast", "unknown"])
def test_flood_from_a_local_port_reaches_every_tunnel(dst):
    br, t1, t2, p1, p2 = mesh_bridge()
    assert names(br.forward(p1, [pkt(dst, A)], 0.0)) == {"t1", "t2", "p2"}


def test_unicast_from_tunnel_to_a_mac_behind_another_tunnel_is_dropped_and_counted():
    br, t1, t2, p1, p2 = mesh_bridge()
    br.forward(t2, [pkt(BCAST, B)], 0.0)  # B learned behind t2
    assert br.forward(t1, [pkt(B, A)], 1.0) == {}
    assert t1.stats.drops.get("unreachable") == 1


def test_unicast_from_local_port_to_a_mac_behind_a_tunnel_goes_there():
    br, t1, t2, p1, p2 = mesh_bridge()
    br.forward(t2, [pkt(BCAST, B)], 0.0)
    assert names(br.forward(p1, [pkt(B, A)], 1.0)) == {"t2"}


def test_split_horizon_off_on_both_tunnels_relays_between_them():
    """The relay design (set-port T split-horizon=off): a hub forwards between spokes."""
    br, t1, t2, p1, p2 = mesh_bridge()
    for t in (t1, t2):
        br.configure_port(t, {"split-horizon": False})
    assert names(br.forward(t1, [pkt(BCAST, A)], 0.0)) == {"t2", "p1", "p2"}
    br.forward(t2, [pkt(BCAST, B)], 1.0)  # B learned behind t2
    assert names(br.forward(t1, [pkt(B, A)], 2.0)) == {"t2"}


def test_split_horizon_off_on_one_tunnel_relays_to_and_from_it_only():
    br, t1, t2, p1, p2 = mesh_bridge()
    t3 = br.add_port(Port("t3", "gre", TunnelLike()))
    br.set_port_state(t3, True)
    br.configure_port(t1, {"split-horizon": False})
    assert names(br.forward(t1, [pkt(BCAST, A)], 0.0)) == {"t2", "t3", "p1", "p2"}
    assert names(br.forward(t2, [pkt(BCAST, B)], 0.0)) == {"t1", "p1", "p2"}


def test_split_horizon_setting_resets_to_the_ports_default():
    br, t1, t2, p1, p2 = mesh_bridge()
    br.configure_port(t1, {"split-horizon": False})
    br.configure_port(t1, {})
    assert t1.split_horizon
    br.configure_port(p1, {"split-horizon": True})  # a local port may join the group
    assert names(br.forward(t1, [pkt(BCAST, A)], 0.0)) == {"p2"}
