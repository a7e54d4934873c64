"""Topologies: the same two hosts, joined by whichever switch a case tests.

Design: `build()` makes h1 and h2 (and, if asked, a filler host h3 and idle
ports), then hands their root-namespace veth ends to one switch builder.
Every switch object answers `pids()` (processes to account CPU and memory
to; empty for the kernel bridge) and carries `notes`. ovslite and OVS
topologies are described as bridges -> ports (ovslite writes them as one
database; OVS gets them through ovs-vsctl):

  chain=N, link="patch": br1 -[patch]- br2 -[patch]- ... brN, h1 on br1, h2 on brN
  chain=N, link="veth":  the same, each hop a root-namespace veth pair
  extra_ports=K:         K idle veth ports on br1 (the port-count rows)
  filler=True:           h3 on br1, to source many MACs (the fdb-size rows)
  prefix="c8":           every role (hosts, bridges, links) prefixed, so several
                         topologies can stand in one run side by side (latency-pairs)

OVS's own patch and veth pairs (ovs-patch, ovs-veth) are the reference for
what joining two bridges costs a userspace datapath whose flows already skip
patch ports. ovslite's bridge config carries mac-table-size large enough for
the 100k-MAC row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import hosts, sw_linux, sw_ovs, sw_ovslite
from .hosts import Host
from .resources import Resources
from .sw_ovslite import PortSpec

MAC_TABLE_SIZE = 200_000


@dataclass
class Topo:
    kind: str
    h1: Host
    h2: Host
    switch: object
    workdir: str
    bridges: list[str] = field(default_factory=list)
    h3: Host | None = None

    def pids(self) -> list[int]:
        return self.switch.pids()

    @property
    def notes(self) -> list[str]:
        return self.switch.notes


def _bridges(res: Resources, h1: Host, h2: Host, chain: int, link: str,
             extra: list[str], prefix: str = "") -> dict[str, list[PortSpec]]:
    names = [res.link_name(f"{prefix}s{i + 1}") for i in range(chain)]
    ports: dict[str, list[PortSpec]] = {n: [] for n in names}
    ports[names[0]].append(PortSpec(h1.port))
    ports[names[0]] += [PortSpec(p) for p in extra]
    for i in range(chain - 1):
        left, right = names[i], names[i + 1]
        if link == "patch":
            a, b = res.link_name(f"{prefix}p{i + 1}a"), res.link_name(f"{prefix}p{i + 1}b")
            ports[left].append(PortSpec(a, "patch", {"peer": b}))
            ports[right].append(PortSpec(b, "patch", {"peer": a}))
        elif link == "veth":
            a, b = hosts.make_pair(res, f"{prefix}v{i + 1}")
            ports[left].append(PortSpec(a))
            ports[right].append(PortSpec(b))
        else:
            raise ValueError(f"unknown link kind {link!r}")
    ports[names[-1]].append(PortSpec(h2.port))
    return ports


def build(res: Resources, kind: str, chain: int = 1, link: str = "patch",
          extra_ports: int = 0, filler: bool = False, prefix: str = "") -> Topo:
    h1, h2 = hosts.pair_hosts(res, prefix)
    h3 = hosts.make_host(res, f"{prefix}h3", 3) if filler else None
    extra = hosts.make_idle_ports(res, extra_ports, prefix)
    edge = [h1.port, h2.port] + ([h3.port] if h3 else []) + extra
    workdir = res.tempdir("work")
    if kind == "linux":
        if chain != 1:
            raise ValueError(f"{kind}: only single-bridge topologies are built")
        switch = sw_linux.start(res, edge, f"{prefix}lbr")
        bridges = [switch.name]
    elif kind in ("ovs", "ovslite"):
        spec = _bridges(res, h1, h2, chain, link, extra, prefix)
        if h3 is not None:
            spec[next(iter(spec))].append(PortSpec(h3.port))
        if kind == "ovs":
            switch = sw_ovs.start(res, spec)
        else:
            switch = sw_ovslite.start(res, spec, {"mac-table-size": MAC_TABLE_SIZE}, f"{prefix}ovslite")
        bridges = list(spec)
    else:
        raise ValueError(f"unknown switch kind {kind!r}")
    hosts.connectivity(h1, h2)
    return Topo(kind, h1, h2, switch, workdir, bridges, h3)
