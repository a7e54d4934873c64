"""Per-frame cost of the forwarding core alone (no I/O): `python -m integration.bench.corecost`.

Shows how a frame's cost depends on what it does: known unicast should cost
the same whatever the number of ports, and a flood should cost in proportion
to the ports it reaches. Pure Python timing of Bridge.forward on 64-frame
batches; a figure for reading, never an assertion.
"""

from __future__ import annotations

import time

from ovslite.bridge import Bridge, Port
from ovslite.vnet import ethernet

SRC = bytes.fromhex("020000000001")
DST = bytes.fromhex("020000000002")
ROUNDS = 3000


def per_frame_ns(bridge: Bridge, port: Port, pkt: bytes) -> float:
    batch = [pkt] * 64
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


if __name__ == "__main__":
    main()
