"""Per-frame cost of port mirrors in the datapath (no I/O): `python -m integration.bench.mirrorcost`.

Known unicast p1 -> p2 on a 4-port bridge through `Datapath.receive` (flow cache
included) with ports that keep what they are sent (no sockets), 64-frame
batches: without mirrors (flow cache hits, and the slow path the
cache skips, which mirrored frames always take), with a mirror that cannot select these frames (its
source is another port: the batch is forwarded whole), with one selecting them
(source p1, output p4: the batch forwarded whole plus the copies), select-all,
and one selecting by destination (p2: frame-at-a-time forwarding plus the copies). Best of 5 runs (a shared machine is noisy). A figure for reading (docs/mirrors.md), never an assertion.
"""

from __future__ import annotations

import time

from ovslite import mirror
from ovslite.bridge import Bridge, Port
from ovslite.datapath import Datapath
from ovslite.vnet import ethernet

SRC = bytes.fromhex("020000000001")
DST = bytes.fromhex("020000000002")
ROUNDS = 2000


class Keep:
    """A netdev that takes every frame and keeps none (no sockets)."""

    deliver_batch = None

    def send_batch(self, packets: list) -> int:
        return len(packets)


CASES = {
    "no mirror, slow path": None,
    "no mirror": {},
    "mirror not selecting": {"m": {"select-src-port": ["p3"], "output-port": "p4"}},
    "src p1 -> p4": {"m": {"select-src-port": ["p1"], "output-port": "p4"}},
    "select-all -> p4": {"m": {"select-all": True, "output-port": "p4"}},
    "dst p2 -> p4": {"m": {"select-dst-port": ["p2"], "output-port": "p4"}},
}


def per_frame_ns(mirrors: dict | None) -> float:
    """None: no mirror, every batch through Datapath.input (the slow path, as mirrored
    frames are never cached)."""
    br = Bridge("br0")
    ports = [br.add_port(Port(f"p{i}", netdev=Keep())) for i in range(1, 5)]
    for p in ports:
        br.set_port_state(p, True)
    mirror.configure(br, mirrors or {})
    dp = Datapath(None, clock=lambda: 1.0)
    dp.receive(ports[1], [ethernet(SRC + DST + b"\x08\x00" + bytes(46))])  # learn DST on p2
    batch = [ethernet(DST + SRC + b"\x08\x00" + bytes(46))] * 64
    dp.receive(ports[0], batch)  # learn SRC, set up the flow where allowed
    start = time.perf_counter()
    receive = dp.receive if mirrors is not None else lambda p, b: dp.input(p, b, 0)
    for _ in range(ROUNDS):
        receive(ports[0], batch)
    return (time.perf_counter() - start) / ROUNDS / len(batch) * 1e9


def main() -> None:
    print(f"{'case':<22}  {'ns/frame (best of 5)':>20}")
    for name, mirrors in CASES.items():
        print(f"{name:<22}  {min(per_frame_ns(mirrors) for _ in range(5)):>20.0f}")


if __name__ == "__main__":
    main()
