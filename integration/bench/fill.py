"""Fill a switch's MAC table: send frames from COUNT distinct source MACs.

Run inside the filler host's namespace:
    python -m integration.bench.fill IFNAME COUNT RATE

Design: one frame from the host's own MAC goes first (broadcast, so the
switch learns where that MAC lives); every fill frame is then addressed
*to* that same MAC, so the switch filters it at the ingress port instead
of flooding 100k frames onto the measured hosts. Sources are locally
administered unicast MACs 02:b0:xx:xx:xx:xx. The EtherType is the IEEE
local-experimental 0x88b5, which no host stack answers. Sending is paced
at RATE frames/s so the switch's socket buffer never overflows (a dropped
frame would be a MAC never learned). Bounded: exactly COUNT+1 frames.
"""

from __future__ import annotations

import socket
import sys
import time

ETHERTYPE = b"\x88\xb5"
PAD = bytes(46)  # 14 + 46 = 60-byte minimum frame
CHUNK = 256


def main(argv: list[str]) -> int:
    ifname, count, rate = argv[0], int(argv[1]), float(argv[2])
    with open(f"/sys/class/net/{ifname}/address") as f:
        own = bytes.fromhex(f.read().strip().replace(":", ""))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((ifname, 0))
    sock.send(b"\xff" * 6 + own + ETHERTYPE + PAD)
    time.sleep(0.2)  # let the switch learn `own` before frames are sent to it
    send = sock.send
    head = own + b"\x02\xb0"
    tail = ETHERTYPE + PAD
    start = time.monotonic()
    for base in range(0, count, CHUNK):
        for i in range(base, min(base + CHUNK, count)):
            send(head + i.to_bytes(4, "big") + tail)
        delay = start + (base + CHUNK) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
