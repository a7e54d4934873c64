"""A quick TCP figure across a tunnel, both directions (`make bench`'s overlay
section, integration/bench/overlay.py, measures every setup side by side, one
direction): two namespaced hosts as integration/test_tunnel.py builds them,
one iperf3 stream each way between the containers (offloads on), printed as
(Gbit/s received, sender's retransmits, [CPU seconds per GB moved of host a's
ovslited, of host b's when it runs one]).

    .venv/bin/python -m integration.bench.overlay_quick kernel [OPTION=VALUE...]
    .venv/bin/python -m integration.bench.overlay_quick vxlan|geneve|gre [OPTION=VALUE...]

`kernel`: host a runs ovslite (vxlan port), host b the kernel's vxlan device in
a Linux bridge; a type name: ovslite on both hosts. Options go to ovslite's
port(s) (e.g. csum=true). Everything is removed on exit, also on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..daemon import Daemon
from ..netns import Network
from ..test_tunnel import kernel_vxlan, start_ovslite, two_hosts


def main(argv: list[str]) -> int:
    kind, options = argv[0], argv[1:]
    net = Network()
    workdir = Path(tempfile.mkdtemp(prefix="ovl-overlay-"))
    made: list[Daemon] = []

    def make(label: str, **kw) -> Daemon:
        (workdir / label).mkdir()
        d = Daemon(workdir / label, label=label, **kw)
        made.append(d)
        return d.start()

    def cpu(d: Daemon) -> float:
        with open(f"/proc/{d.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def iperf(src, dst, seconds: int = 5):
        """(Gbit/s, retransmits, CPU seconds per GB of each ovslited: a's, b's)."""
        server = net.popen(["ip", "netns", "exec", dst.cns, "iperf3", "-s", "-1"])
        time.sleep(0.5)
        before = [cpu(d) for d in made]
        out = src.c("iperf3", "-c", dst.container_ip, "-t", str(seconds), "-J",
                    check=False, timeout=60).stdout
        used = [cpu(d) - b for d, b in zip(made, before, strict=True)]
        server.wait(10)
        end = json.loads(out)["end"]
        gbytes = end["sum_received"]["bytes"] / 1e9
        return (round(end["sum_received"]["bits_per_second"] / 1e9, 3),
                end["sum_sent"].get("retransmits"), [round(u / gbytes, 2) for u in used])

    try:
        a, b = two_hosts(net)
        if kind == "kernel":
            kernel_vxlan(b, a)
            start_ovslite(make, a, "vxlan", b, "key=100", *options)
        else:
            start_ovslite(make, a, kind, b, "key=100", *options)
            start_ovslite(make, b, kind, a, "key=100", *options)
        a.ping(b)
        print(kind, *options, "a(ovslite)->b", iperf(a, b), flush=True)
        print(kind, *options, "b->a(ovslite)", iperf(b, a), flush=True)
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
