"""CPU cost of the spanning tree core's periodic work: `python -m integration.bench.stpcore [N ...]`.

A lone bridge with N ports (default 10 and 200), settled (every port
designated and forwarding), then ticked once a simulated second for 600
seconds; prints the CPU time per simulated second and the BPDUs sent per
second, for STP and RSTP. The core alone, in this process: no root, no
sockets. A figure for reading, never an assertion.
"""

from __future__ import annotations

import sys
import time

from ovslite.stp import BridgeParams, PortParams, SpanningTree

SECONDS = 600


def measure(mode: str, ports: int) -> tuple[float, float]:
    stp = SpanningTree(mode, bytes.fromhex("020000000001"), BridgeParams(), 0.0)
    for n in range(1, ports + 1):
        stp.add_port(f"p{n}", n, bytes.fromhex("020000000002"), PortParams(), True, 10000, 0.0)
    stp.tick(60.0)
    frames = 0
    start = time.process_time()
    for second in range(61, 61 + SECONDS):
        frames += len(stp.tick(float(second)))
    return (time.process_time() - start) / SECONDS, frames / SECONDS


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [10, 200]
    for mode in ("stp", "rstp"):
        for ports in sizes:
            cpu, bpdus = measure(mode, min(ports, 255 if mode == "stp" else 4095))
            print(f"{mode:4} {ports:4} ports: {cpu * 1e3:7.3f} ms CPU per second, "
                  f"{bpdus:6.1f} BPDUs/s")


if __name__ == "__main__":
    main(sys.argv[1:])
