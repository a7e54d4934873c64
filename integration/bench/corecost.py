"""Per-frame cost of the forwarding core alone (no I/O): `python -m integration.bench.corecost`.

Shows how a frame's cost depends on what it does: known unicast should cost
the same whatever the number of ports, and a flood should cost in proportion
to the ports it reaches; and, for known unicast, whatever the number of MACs
in the fdb, with each frame from another source (a learning refresh per
frame) as well as all from one. Pure Python timing of Bridge.forward on
64-frame batches; a figure for reading, never an assertion.
"""

from __future__ import annotations

import time

from ovslite.bridge import Bridge, Port
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


if __name__ == "__main__":
    main()
