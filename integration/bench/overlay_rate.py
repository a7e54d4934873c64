"""A quick 64-byte-frame rate across a tunnel (not `make bench`'s overlay section):
two namespaced hosts as integration/test_tunnel.py builds them, ovslite on both,
trafgen (one CPU) blasting a 60-byte UDP frame from a's container to b's for
`seconds`; printed: frames/s offered (a's container tx) and delivered (b's
container rx), and CPU seconds per million delivered frames of each ovslited.

    .venv/bin/python -m integration.bench.overlay_rate vxlan|geneve|gre [OPTION=VALUE...]

With OVL_RATE_DEBUG=1 in the environment, each daemon's `dump-ports` follows
(where frames were dropped). Everything is removed on exit, also on failure.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..daemon import Daemon
from ..netns import Network
from ..test_tunnel import start_ovslite, two_hosts
from .measure import trafgen_config

SECONDS = 5.0


class _End:
    """What trafgen_config needs of a sender or receiver."""

    def __init__(self, host):
        self.ip = host.container_ip
        self.mac = host.c("cat", "/sys/class/net/eth0/address").stdout.strip()


def cpu_seconds(d: Daemon) -> float:
    with open(f"/proc/{d.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _count(host, what: str) -> int:
    return int(host.c("cat", f"/sys/class/net/eth0/statistics/{what}").stdout)


def main(argv: list[str]) -> int:
    kind, options = argv[0], argv[1:]
    net = Network()
    workdir = Path(tempfile.mkdtemp(prefix="ovl-rate-"))
    made: list[Daemon] = []

    def make(label: str, **kw) -> Daemon:
        (workdir / label).mkdir()
        d = Daemon(workdir / label, label=label, **kw)
        made.append(d)
        return d.start()

    try:
        a, b = two_hosts(net)
        start_ovslite(make, a, kind, b, "key=100", *options)
        start_ovslite(make, b, kind, a, "key=100", *options)
        a.ping(b)
        cfg = workdir / "trafgen.cfg"
        cfg.write_text(trafgen_config(_End(a), _End(b)))
        gen = net.popen(["ip", "netns", "exec", a.cns, "timeout", "-s", "INT", "-k", "3",
                         f"{SECONDS + 2:g}", "trafgen", "--no-sock-mem",
                         "--notouch-irq", "--no-cpu-stats", "--cpus", "1", "--dev", "eth0",
                         "--conf", str(cfg)])
        time.sleep(0.5)
        t0, tx0, rx0 = time.monotonic(), _count(a, "tx_packets"), _count(b, "rx_packets")
        cpu0 = [cpu_seconds(d) for d in made]
        time.sleep(SECONDS)
        t1, tx1, rx1 = time.monotonic(), _count(a, "tx_packets"), _count(b, "rx_packets")
        cpu1 = [cpu_seconds(d) for d in made]
        gen.wait(15)  # trafgen stops on timeout's SIGINT
        delivered = rx1 - rx0
        per_m = [round((c1 - c0) / delivered * 1e6, 2) if delivered else None
                 for c0, c1 in zip(cpu0, cpu1, strict=True)]
        print(kind, *options, {"offered_fps": round((tx1 - tx0) / (t1 - t0)),
                               "delivered_fps": round(delivered / (t1 - t0)),
                               "cpu_s_per_mframe": per_m}, flush=True)
        if os.environ.get("OVL_RATE_DEBUG"):
            for d in made:
                print(d.ctl("dump-ports", "br-tun").stdout)
    finally:
        for d in made:
            d.stop()
        problems = net.close()
        shutil.rmtree(workdir, ignore_errors=True)
        if problems:
            print("cleanup problems:", problems, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
