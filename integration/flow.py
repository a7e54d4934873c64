"""A steady flow of numbered Ethernet frames, and a counter for them.

Measures how many frames a switch loses while something happens (a restart):
the sender paces frames at a fixed rate, each carrying a run id and a
sequence number; the counter, on the far side, records which numbers arrived.
Standard library only: it also runs inside the systemd test container with
the system's python3.

    python3 flow.py count IFNAME RUN [SECONDS]  # until SIGTERM/SIGINT (or SECONDS); prints JSON
    python3 flow.py send IFNAME DSTMAC RUN RATE SECONDS   # prints JSON

Frames use the local experimental EtherType 0x88B5 and are 60 bytes long.
The counter reports its own socket's drops (PACKET_STATISTICS), so a loss in
the measuring host is not blamed on the switch.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys
import time

ETHERTYPE = 0x88B5
SOL_PACKET = 263
PACKET_STATISTICS = 6
HEADER = struct.Struct("!6s6sH8sQ")  # dst, src, type, run id, sequence number
FRAME_LEN = 60


def mac_bytes(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def run_id(text: str) -> bytes:
    return text.encode()[:8].ljust(8, b"\0")


def send(ifname: str, dst: str, run: str, rate: float, seconds: float) -> dict:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((ifname, 0))
    src = sock.getsockname()[4]
    pad = bytes(FRAME_LEN - HEADER.size)
    head = (mac_bytes(dst), src, ETHERTYPE, run_id(run))
    errors = 0
    n = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = min(int((now - t0) * rate) + 1, int(seconds * rate))
        while n < due:
            try:
                sock.send(HEADER.pack(*head, n) + pad)
            except OSError:  # ENOBUFS: the frame never left; count it as sent anyway
                errors += 1
            n += 1
        time.sleep(0.0002)
    return {"sent": n, "send_errors": errors, "seconds": round(time.monotonic() - t0, 3)}


def count(ifname: str, run: str, seconds: float | None = None) -> dict:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    sock.bind((ifname, ETHERTYPE))
    sock.settimeout(0.2)
    rid = run_id(run)
    seen: set[int] = set()
    received = reordered = 0
    last = -1
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print("counting", flush=True)
    end = time.monotonic() + seconds if seconds else None
    while not stop and (end is None or time.monotonic() < end):
        try:
            frame = sock.recv(2048)
        except TimeoutError:
            continue
        except InterruptedError:
            continue
        if len(frame) < HEADER.size:
            continue
        _dst, _src, _type, got_run, seq = HEADER.unpack_from(frame)
        if got_run != rid:
            continue
        received += 1
        seen.add(seq)
        if seq < last:
            reordered += 1
        last = max(last, seq)
    packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return {"received": received, "distinct": len(seen), "duplicates": received - len(seen),
            "reordered": reordered, "highest": last, "counter_drops": drops,
            "missing": _runs(sorted(seen), last)}


def _runs(seen: list[int], last: int) -> list[list[int]]:
    """Missing sequence numbers below `last` as [first, last] runs (at most 20)."""
    runs = []
    expect = 0
    for seq in seen:
        if seq > expect:
            runs.append([expect, seq - 1])
        expect = seq + 1
    return runs[:20]


def main(argv: list[str]) -> int:
    if argv[:1] == ["send"] and len(argv) == 6:
        print(json.dumps(send(argv[1], argv[2], argv[3], float(argv[4]), float(argv[5]))), flush=True)
        return 0
    if argv[:1] == ["count"] and len(argv) in (3, 4):
        seconds = float(argv[3]) if len(argv) == 4 else None
        print(json.dumps(count(argv[1], argv[2], seconds)), flush=True)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
