"""Per-frame cost of the forwarding core alone (no I/O): `python -m integration.bench.corecost`.

Shows how a frame's cost depends on what it does: known unicast should cost
the same whatever the number of ports, and a flood should cost in proportion
to the ports it reaches; and, for known unicast, whatever the number of MACs
in the fdb, with each frame from another source (a learning refresh per
frame) as well as all from one. Pure Python timing of Bridge.forward on
64-frame batches; a figure for reading, never an assertion.

Last, the datapath across a chain of 1 to 8 bridges joined by patch ports
(ports that keep what they are sent, no sockets): known unicast through the
slow path (`Datapath.input`, every bridge) and through the flow cache
(`Datapath.receive`), one frame per batch (what a ping costs) and 64.
"""

from __future__ import annotations

import time

from ovslite.bridge import Bridge, Port
from ovslite.datapath import Datapath
from ovslite.netdev.patch import PatchNetdev
from ovslite.vnet import ethernet

SRC = bytes.fromhex("020000000001")
DST = bytes.fromhex("020000000002")
ROUNDS = 3000
FDB_SIZES = (1, 100_000)


def mac(n: int) -> bytes:
    return b"\x02\xb0" + n.to_bytes(4, "big")


def per_frame_ns(bridge: Bridge, port: Port, pkt: bytes | list[bytes]) -> float:
    batch = pkt if isinstance(pkt, list) else [pkt] * 64
    start = time.perf_counter()
    for _ in range(ROUNDS):
        bridge.forward(port, batch, 1.0)
    return (time.perf_counter() - start) / ROUNDS / len(batch) * 1e9


def main() -> None:
    print(f"{'ports':>5}  {'known unicast':>14}  {'broadcast':>10}  {'per port reached':>16}")
    for nports in (2, 16, 64):
        br = Bridge("br0")
        ports = [Port(f"p{i}") for i in range(nports)]
        for p in ports:
            br.add_port(p)
            br.set_port_state(p, True)
        br.macs.learn(0, DST, ports[1], 1.0)
        unicast = per_frame_ns(br, ports[0], ethernet(DST + SRC + b"\x08\x00" + bytes(46)))
        flood = per_frame_ns(br, ports[0], ethernet(b"\xff" * 6 + SRC + b"\x08\x00" + bytes(46)))
        print(f"{nports:>5}  {unicast:>11.0f} ns  {flood:>7.0f} ns  {flood / (nports - 1):>13.0f} ns")
    print(f"\n{'fdb entries':>11}  {'known unicast, one source':>25}  {'64 sources to 64 destinations':>29}")
    for size in FDB_SIZES:
        br = Bridge("br0", table_size=2 * size + 128)
        ports = [Port(f"p{i}") for i in range(2)]
        for p in ports:
            br.add_port(p)
            br.set_port_state(p, True)
        for n in range(size):  # the destinations, spread over the table
            br.macs.learn(0, mac(n), ports[1], 1.0)
        srcs = [mac(size + i) for i in range(64)]
        for s in srcs:
            br.macs.learn(0, s, ports[0], 1.0)
        one = per_frame_ns(br, ports[0], ethernet(mac(0) + srcs[0] + b"\x08\x00" + bytes(46)))
        dsts = [mac(i * size // 64) for i in range(64)]
        mixed = per_frame_ns(br, ports[0], [ethernet(d + s + b"\x08\x00" + bytes(46))
                                            for d, s in zip(dsts, srcs, strict=True)])
        print(f"{size:>11,}  {one:>22.0f} ns  {mixed:>26.0f} ns")
    chain_costs()


class Sink:
    """A port's netdev that keeps nothing and always succeeds."""

    deliver_batch = None

    def send_batch(self, packets) -> int:
        return len(packets)


def chain(length: int) -> tuple[Datapath, Port, Port]:
    """br0 -[patch]- br1 ... with an edge port at each end: (datapath, first edge, last edge)."""
    dp = Datapath(None)
    bridges = [Bridge(f"br{i}") for i in range(length)]
    edges = (Port("e0", netdev=Sink()), Port("e1", netdev=Sink()))
    bridges[0].add_port(edges[0])
    bridges[-1].add_port(edges[1])
    patches = {}
    for i in range(length - 1):
        a, b = f"p{i}a", f"p{i}b"
        patches[a] = Port(a, "patch", PatchNetdev(a, {"peer": b}))
        patches[b] = Port(b, "patch", PatchNetdev(b, {"peer": a}))
        bridges[i].add_port(patches[a])
        bridges[i + 1].add_port(patches[b])
    for p in patches.values():
        p.netdev.resolve(p, patches, dp)
    for br in bridges:
        for p in br.ports.values():
            br.set_port_state(p, True)
    return dp, *edges


def slow_path(dp: Datapath, port: Port, batch: list) -> None:
    dp.input(port, batch, 0)


def flow_cache(dp: Datapath, port: Port, batch: list) -> None:
    dp.receive(port, batch)


def datapath_ns(run, dp: Datapath, port: Port, batch: list, rounds: int = 5000) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        run(dp, port, batch)
    return (time.perf_counter() - start) / (rounds * len(batch)) * 1e9


def chain_costs() -> None:
    print(f"\n{'bridges':>7}  {'slow path, 1 frame':>18}  {'cached, 1 frame':>15}  "
          f"{'slow, per frame of 64':>21}  {'cached, per frame of 64':>23}")
    ab, ba = (ethernet(d + s + b"\x08\x00" + bytes(46)) for d, s in ((DST, SRC), (SRC, DST)))
    for length in (1, 2, 4, 8):
        dp, first, last = chain(length)
        for port, pkt in ((first, ab), (last, ba), (first, ab), (last, ba)):  # learn, set up flows
            dp.receive(port, [pkt])
        row = [datapath_ns(run, dp, first, batch)
               for batch in ([ab], [ab] * 64) for run in (slow_path, flow_cache)]
        print(f"{length:>7}  {row[0]:>15.0f} ns  {row[1]:>12.0f} ns  {row[2]:>18.0f} ns  {row[3]:>20.0f} ns")


if __name__ == "__main__":
    main()
