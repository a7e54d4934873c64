"""CPU per received tunnel segment in Python, no sockets: the work ovslite does
for each datagram after the read (parse and dispatch, the vnet header, joining
TCP segments back into a GSO frame: ovslite.tunnel.endpoint and .gro), for a
64 KB TCP stream cut into 47 Geneve datagrams of 1398 bytes of payload, as a
sender without a whole-frame path (ovslite's geneve/gre, or any sender over a
real wire) delivers it. Prints µs per segment and the top functions; then
µs per 64 KB datagram holding one whole TCP frame (what a kernel vxlan
sender delivers over a veth).

    .venv/bin/python -m integration.bench.tunnel_rxcost
"""

from __future__ import annotations

import cProfile
import io
import pstats
import socket
import time

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from ovslite.tunnel.endpoint import Endpoint
from ovslite.tunnel.gro import coalesce
from ovslite.tunnel.headers import geneve_header

REMOTE = "192.168.50.2"


class _Port:
    name = "t0"
    options_skipped = 0
    destinations = [(REMOTE, 6081)]
    inner_mtu = 1450
    port = object()

    def __init__(self):
        self.rx_drops: dict = {}


def main() -> None:
    endpoint = Endpoint("geneve", socket.AF_INET, 6081, sock=object())
    endpoint.add(_Port(), [REMOTE], 100)
    datagrams, seq = [], 1000
    for _ in range(47):
        frame = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(seq=seq, flags="A") / bytes(1398)
        datagrams.append(geneve_header(100) + bytes(frame))
        seq += 1398

    def receive_one_frame():
        groups: dict = {}
        now = time.monotonic()
        for data in datagrams:
            endpoint._take(data, REMOTE, now, groups)
        return [coalesce(packets) for packets in groups.values()]

    assert len(receive_one_frame()[0]) == 2  # 46 joined + the last, shorter one
    rounds = 300
    t0 = time.process_time()
    for _ in range(rounds):
        receive_one_frame()
    print(f"{(time.process_time() - t0) / rounds / len(datagrams) * 1e6:.1f} µs per segment")
    profile = cProfile.Profile()
    profile.runcall(lambda: [receive_one_frame() for _ in range(100)])
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(8)
    print(out.getvalue())

    whole = geneve_header(100) + bytes(
        Ether() / IP(src="10.0.0.1", dst="10.0.0.2", len=64040) / TCP(flags="A") / bytes(64000))
    rounds = 20000
    t0 = time.process_time()
    for _ in range(rounds):
        endpoint._take(whole, REMOTE, 0.0, {})
    print(f"{(time.process_time() - t0) / rounds * 1e6:.1f} µs per 64 KB datagram")


if __name__ == "__main__":
    main()
