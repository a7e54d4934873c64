"""What the bad-frame checks cost per frame: `python -m integration.bench.checkcost`.

Bridge.forward on 64-frame batches of the frames the checks touch (a new
source per frame, tagged, multicast) and of the dropped kinds themselves;
each figure is the best of REPEATS runs, so a busy machine (corecost's single
runs vary twofold on a shared VM) still gives comparable figures. To compare
two trees, run it with PYTHONPATH pointing at each in turn. Never an assertion.
"""

from __future__ import annotations

import time

from ovslite.bridge import Bridge, Port
from ovslite.vnet import ethernet, push_tag

SRC = bytes.fromhex("020000000001")
DST = bytes.fromhex("020000000002")
REPEATS = 300
ROUNDS = 20


def mac(n: int) -> bytes:
    return b"\x02\xb0" + n.to_bytes(4, "big")


def frame(dst: bytes, src: bytes, vlan: int | None = None) -> bytes:
    pkt = ethernet(dst + src + b"\x08\x00" + bytes(46))
    return push_tag(pkt, vlan) if vlan is not None else pkt


def best_ns(bridge: Bridge, port: Port, batch: list) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(ROUNDS):
            bridge.forward(port, batch, 1.0)
        best = min(best, time.perf_counter() - start)
    return best / ROUNDS / len(batch) * 1e9


def main() -> None:
    br = Bridge("br0")
    ports = [Port(f"p{i}") for i in range(3)]
    for p in ports:
        br.add_port(p)
        br.set_port_state(p, True)
    for vlan in (0, 10):
        br.macs.learn(vlan, DST, ports[1], 1.0)
    for i in range(64):
        br.macs.learn(0, mac(1000 + i), ports[1], 1.0)
    cases = {
        "known unicast, one source": [frame(DST, SRC)] * 64,
        "known unicast, 64 sources": [frame(mac(1000 + (i + 1) % 64), mac(i)) for i in range(64)],
        "known unicast, tagged": [frame(DST, SRC, 10)] * 64,
        "multicast (01:00:5e), 3 ports": [frame(bytes.fromhex("01005e000001"), SRC)] * 64,
        "dropped: zero source": [frame(DST, bytes(6))] * 64,
        "dropped: VLAN 4095": [frame(DST, SRC, 4095)] * 64,
        "dropped: LLDP": [frame(bytes.fromhex("0180c200000e"), SRC)] * 64,
    }
    for name, batch in cases.items():
        print(f"{name:32s} {best_ns(br, ports[0], batch):6.0f} ns")


if __name__ == "__main__":
    main()
