"""Where ovslited's memory goes: `python -m integration.bench.memprobe daemon|table ...`.

  daemon PORTS MACS  a private ovslited on the bench topology (h1, h2, the filler
                     h3 if MACS > 0, idle veths up to PORTS system ports), then
                     filled with MACS source MACs; prints /proc figures after the
                     start and after the fill. Needs root; cleans up like the bench.
  table [N]          the MAC table alone, in this process: N MACs learned from one
                     port, as the fill does; RSS per entry. No root needed.

Design: the figures are the kernel's (/proc/PID/status, /proc/PID/smaps), not
estimates. Packet rings are told apart from the rest: they are the mappings of
packet sockets ("socket:[...]" in smaps), counted in RssFile; RssAnon is the
interpreter's heap (modules, the MAC table, ports). A figure for reading,
never an assertion; the bench's rss_peak_mib is VmHWM, as here.
"""

from __future__ import annotations

import re
import sys
import time

STATUS_KEYS = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")


def status_mib(pid: int | str = "self") -> dict[str, float]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in STATUS_KEYS:
                out[key] = int(value.split()[0]) / 1024
    return out


def socket_maps_mib(pid: int | str = "self") -> tuple[int, float]:
    """(how many packet-socket mappings, their resident MiB): the rings."""
    count, kib, in_socket = 0, 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
                in_socket = "socket:[" in line
                count += in_socket
            elif in_socket and line.startswith("Rss:"):
                kib += int(line.split()[1])
    return count, kib / 1024


def line(tag: str, pid: int | str) -> str:
    s = status_mib(pid)
    maps, rings = socket_maps_mib(pid)
    figures = " ".join(f"{k} {v:.1f}" for k, v in s.items())
    return f"{tag:>14}: {figures} MiB; rings {rings:.1f} MiB in {maps} mappings, rest {s['VmRSS'] - rings:.1f} MiB"


def daemon(ports: int, macs: int) -> int:
    from .cases import _fill
    from .resources import Resources
    from .topo import build

    res = Resources()
    try:
        filler = macs > 0
        topo = build(res, "ovslite", extra_ports=ports - (3 if filler else 2), filler=filler)
        pid = topo.pids()[0]
        print(line("started", pid), flush=True)
        if filler:
            before = status_mib(pid)["RssAnon"]
            _fill(topo, macs, lambda what: None)
            print(line(f"{macs:,} MACs", pid))
            grown = status_mib(pid)["RssAnon"] - before
            print(f"{'per MAC':>14}: RssAnon +{grown:.1f} MiB, {grown * 2**20 / macs:.0f} B")
    finally:
        left = res.close()
        if left:
            print("left behind:", left, file=sys.stderr)
    return 1 if left else 0


def table(n: int) -> int:
    from ovslite.bridge import Bridge, Port

    br = Bridge("br0", table_size=2 * n)
    port = Port("p1")
    br.add_port(port)
    # Frames are made first and the MAC sliced out per learn, as Bridge.forward does.
    frames = [bytes(16) + b"\x02\xb0" + i.to_bytes(4, "big") for i in range(n)]
    before = status_mib()
    start = time.perf_counter()
    for f in frames:
        br.macs.learn(0, f[16:22], port, start)
    took = time.perf_counter() - start
    after = status_mib()
    grown = after["RssAnon"] - before["RssAnon"]
    print(f"{n:,} MACs: RssAnon +{grown:.1f} MiB ({grown * 2**20 / n:.0f} B per entry), "
          f"VmHWM +{after['VmHWM'] - before['VmHWM']:.1f} MiB, {took / n * 1e9:.0f} ns per new MAC")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["daemon"] and len(argv) == 3:
        return daemon(int(argv[1]), int(argv[2]))
    if argv[:1] == ["table"] and len(argv) <= 2:
        return table(int(argv[1]) if len(argv) == 2 else 100_000)
    print(__doc__.split("\n\n")[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
