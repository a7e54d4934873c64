"""What a tunnel's datagrams cost from Python, measured between two namespaces.

    .venv/bin/python -m integration.bench.udpcost [--seconds 2] [--only send,recv,gso,kgso,vxlan,gre,headers,ovs]

Two namespaces A and B (192.168.77.1/24 and .2 on one veth pair), made here and
removed on exit, also on failure or Ctrl-C (integration.bench.resources). Each
measurement runs as a worker process inside a namespace (`ip netns exec`,
this module with --worker; the workers are in udpcost_workers.py), so all
traffic stays in the pair:
  send   UDP 1450-byte datagrams: one sendto per datagram vs UDP_SEGMENT batches
  recv   one recvmsg per datagram vs UDP_GRO coalesced reads (sender: UDP_SEGMENT)
  gso    a 64 KB TCP GSO frame segmented in Python (ovslite.tunnel.segment),
         VXLAN-encapsulated and sent with UDP_SEGMENT; and its parts alone:
         segmenting, sending, the payload sums (int.from_bytes, numpy)
  kgso   the same GSO frame written with AF_PACKET into a kernel vxlan device,
         which encapsulates and segments it (B: kernel vxlan + bridge)
  vxlan  the kernel's vxlan device + bridge in B answers ARP and ping that A
         sends as VXLAN built by ovslite.tunnel.headers over a plain UDP socket
  gre    a raw IPPROTO_GRE socket in A and B exchanges GRE (key, checksum)
  headers  CPU per call of ovslite.tunnel.headers' per-frame work (no I/O)
  ovs    Open vSwitch userspace in B (br-phy + br-int, as OVS documents it)
         answers ARP and ping over vxlan, geneve and gre that A builds with
         ovslite.tunnel.headers (outer checksum zero and computed)
Rates are wall-clock over the run; CPU is the worker's own user+sys time, the
steadier figure on a shared machine. Prints one JSON object per measurement,
then a table. Limits: IPv4 only; one sender and one receiver process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from .resources import Resources, run
from .udpcost_workers import A_IP, B_IP, WORKERS


class Pair:
    """Namespaces A and B joined by a veth; close() removes them."""

    def __init__(self, res: Resources) -> None:
        self.res = res
        self.a = self.res.add_namespace("a")
        self.b = self.res.add_namespace("b")
        self.veth_a = self.res.link_name("a")
        self.veth_b = self.res.link_name("bb")
        self.res.add_link(self.veth_a, ["type", "veth", "peer", "name", self.veth_b, "netns", self.b])
        run(["ip", "link", "set", self.veth_a, "netns", self.a])
        for ns, dev, ip in ((self.a, self.veth_a, A_IP), (self.b, self.veth_b, B_IP)):
            run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev])
            run(["ip", "-n", ns, "link", "set", dev, "up"])

    def worker(self, ns: str, name: str, **kwargs) -> subprocess.Popen:
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "integration.bench.udpcost",
               "--worker", name, "--args", json.dumps(kwargs)]
        return self.res.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def call(self, ns: str, name: str, timeout: float = 60, **kwargs) -> dict:
        return self.finish(self.worker(ns, name, **kwargs), timeout)

    def serve(self, ns: str, name: str, **kwargs) -> subprocess.Popen:
        """Start a worker that prints 'ready' before it waits for traffic."""
        proc = self.worker(ns, name, **kwargs)
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"worker {name} did not start")
        return proc

    def finish(self, proc: subprocess.Popen, timeout: float = 60) -> dict:
        out, err = proc.communicate(timeout=timeout)
        lines = out.strip().splitlines()
        if proc.returncode != 0 or not lines:
            last = (err.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"worker {' '.join(proc.args[5:])[:80]} failed: {last}")
        return json.loads(lines[-1])


def measure(pair: Pair, only: set[str], seconds: float) -> list[tuple[str, dict]]:
    results = []
    if "send" in only:
        sink = pair.serve(pair.b, "hold", seconds=4 * seconds + 30)
        try:
            for batch in (1, 8, 16, 44):
                results.append((f"send batch={batch}", pair.call(pair.a, "send", seconds=seconds,
                                                                 batch=batch)))
            results.append(("UDP_SEGMENT datagrams per call, 72 bytes each",
                            pair.call(pair.a, "segmax")))
        finally:
            pair.res.release(sink)
    if "recv" in only:
        # batch 44: UDP_SEGMENT super-datagrams cross the veth whole, so UDP_GRO reads
        # get them whole; batch 1: datagrams one by one, coalesced only if the
        # receiving veth runs GRO (off by default; `ethtool -K ... gro on`).
        for gro, batch, veth_gro in ((False, 44, "off"), (True, 44, "off"), (True, 1, "off"),
                                     (True, 1, "on")):
            run(["ip", "netns", "exec", pair.b, "ethtool", "-K", pair.veth_b, "gro", veth_gro])
            receiver = pair.serve(pair.b, "recv", seconds=seconds, gro=gro)
            sender = pair.worker(pair.a, "send", seconds=seconds + 2, batch=batch)
            r = pair.finish(receiver)
            r["sender"] = pair.finish(sender)["datagrams_per_s"]
            results.append((f"recv gro={gro} sender-batch={batch} veth-gro={veth_gro}", r))
        run(["ip", "netns", "exec", pair.b, "ethtool", "-K", pair.veth_b, "gro", "off"])
    if "gso" in only:
        sink = pair.serve(pair.b, "hold", seconds=2 * seconds + 30)
        try:
            for mode in ("segment", "send", "sendonly", "pysums", "sums"):
                results.append((f"gso64k {mode}", pair.call(pair.a, "gso", seconds=seconds,
                                                            mode=mode)))
        finally:
            pair.res.release(sink)
    if "kgso" in only:
        # kernel vxlan devices at both ends; the inner frames go to a MAC nobody has,
        # so B's bridge drops them after decapsulation
        for ns, dev, local, remote in ((pair.a, pair.veth_a, A_IP, B_IP),
                                       (pair.b, pair.veth_b, B_IP, A_IP)):
            run(["ip", "-n", ns, "link", "add", "kvx", "type", "vxlan", "id", "200", "dstport",
                 "4790", "local", local, "remote", remote, "dev", dev])
            run(["ip", "-n", ns, "link", "set", "kvx", "up"])
        run(["ip", "-n", pair.b, "link", "add", "kbr", "type", "bridge"])
        run(["ip", "-n", pair.b, "link", "set", "kvx", "master", "kbr"])
        run(["ip", "-n", pair.b, "link", "set", "kbr", "up"])
        results.append(("kernel-vxlan-gso64k", pair.call(pair.a, "kgso", seconds=seconds,
                                                         device="kvx")))
        tx = run(["ip", "-n", pair.b, "-s", "-j", "link", "show", "kvx"]).stdout
        results[-1][1]["b_kvx_rx_packets"] = json.loads(tx)[0]["stats64"]["rx"]["packets"]
    if "vxlan" in only:
        b = pair.b
        vx, br = "vxb", "brb"
        run(["ip", "-n", b, "link", "add", vx, "type", "vxlan", "id", "100", "dstport", "4789",
             "local", B_IP, "remote", A_IP, "dev", pair.veth_b])
        run(["ip", "-n", b, "link", "add", br, "type", "bridge"])
        run(["ip", "-n", b, "link", "set", vx, "master", br])
        run(["ip", "-n", b, "addr", "add", "10.200.0.2/24", "dev", br])
        for dev in (vx, br):
            run(["ip", "-n", b, "link", "set", dev, "up"])
        csum = run(["ip", "-n", b, "-d", "link", "show", vx]).stdout
        kernel_tx = "udpcsum" if " udpcsum" in csum else "noudpcsum"
        for zero in (False, True):
            # tcpdump -vv says "[no cksum]" for a zero UDP checksum: what is on the wire
            dump = pair.res.popen(["ip", "netns", "exec", pair.a, "tcpdump", "-l", "-nvv", "-c", "1",
                                   "-i", pair.veth_a, "udp and dst port 4789 and src host " + A_IP],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(1)  # tcpdump attaches its filter
            r = pair.call(pair.a, "check", kind="vxlan", zero_csum=zero)
            try:
                out, _ = dump.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                out = ""
            pair.res.release(dump)
            # At the sender a computed checksum may still be partial (veth tx offload), so
            # tcpdump can call it bad; what matters is zero ("no cksum") vs not.
            found = [w for w in ("no cksum", "udp sum ok", "bad udp cksum") if w in out]
            r["wire_outer_udp_checksum"] = found[0] if found else "not seen"
            r["kernel_vxlan_tx"] = kernel_tx
            results.append((f"kernel-vxlan zero_csum={zero}", r))
    if "headers" in only:
        results.append(("header-work per call", pair.call(pair.a, "headers")))
    if "gre" in only:
        echo = pair.serve(pair.b, "gre", role="echo")
        a = pair.call(pair.a, "gre", role="send")
        b = pair.finish(echo)
        a["b_side"] = b
        a["gre_kernel_support"] = _gre_kernel_support()
        results.append(("raw-gre", a))
    if "ovs" in only:  # last: it moves B's underlay address onto an OVS bridge
        # the kernel tunnels and bridges of kgso/vxlan would answer in OVS's place
        for ns in (pair.a, pair.b):
            for dev in ("vxb", "brb", "kvx", "kbr"):
                run(["ip", "-n", ns, "link", "del", dev], check=False)
        results += ovs_partner(pair)
    return results


def ovs_partner(pair: Pair) -> list[tuple[str, dict]]:
    """Open vSwitch userspace in B as the far end (OVS's own layout: br-phy holds
    the veth and B's underlay address, br-int the tunnel port and 10.200.0.2),
    for each tunnel type in turn; A uses ovslite's headers. Stops OVS after."""
    from .sw_ovs import SCHEMA, ensure_installed
    ensure_installed()
    rundir = pair.res.tempdir("ovs")
    env = {**os.environ, "OVS_RUNDIR": rundir, "OVS_DBDIR": rundir, "OVS_LOGDIR": rundir}
    db = f"unix:{rundir}/db.sock"

    def in_b(*cmd: str, timeout: float = 30) -> str:
        return run(["ip", "netns", "exec", pair.b, *cmd], env=env, timeout=timeout).stdout

    def vsctl(*args: str) -> str:
        return in_b("ovs-vsctl", f"--db={db}", "--timeout=20", *args)

    def stop() -> None:
        for ctl, extra in (("vswitchd.ctl", ["--cleanup"]), ("ovsdb.ctl", [])):
            run(["ovs-appctl", "-t", f"{rundir}/{ctl}", "exit", *extra], env=env, check=False,
                timeout=10)
        # whatever is left in B is killed by Resources.close (ip netns pids)

    in_b("ovsdb-tool", "create", f"{rundir}/conf.db", SCHEMA)
    pair.res.on_close("ovs in B", stop)
    in_b("ovsdb-server", f"{rundir}/conf.db", f"--remote=punix:{rundir}/db.sock",
         f"--pidfile={rundir}/ovsdb.pid", f"--unixctl={rundir}/ovsdb.ctl",
         f"--log-file={rundir}/ovsdb.log", "-vconsole:off", "--detach")
    vsctl("--no-wait", "init")
    in_b("ovs-vswitchd", db, f"--pidfile={rundir}/vswitchd.pid", f"--unixctl={rundir}/vswitchd.ctl",
         f"--log-file={rundir}/vswitchd.log", "-vconsole:off", "--detach")
    run(["ip", "-n", pair.b, "addr", "flush", "dev", pair.veth_b])
    vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
          "--", "add-port", "br-phy", pair.veth_b,
          "--", "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev")
    for dev, addr in (("br-phy", f"{B_IP}/24"), ("br-int", "10.200.0.2/24")):
        run(["ip", "-n", pair.b, "addr", "add", addr, "dev", dev])
        run(["ip", "-n", pair.b, "link", "set", dev, "up"])
    a_mac = run(["ip", "netns", "exec", pair.a, "cat",
                 f"/sys/class/net/{pair.veth_a}/address"]).stdout.strip()
    version = in_b("ovs-vswitchd", "--version").splitlines()[0]
    results = []
    for kind in ("vxlan", "geneve", "gre"):
        vsctl("add-port", "br-int", "t0", "--", "set", "interface", "t0", f"type={kind}",
              f"options:remote_ip={A_IP}", "options:key=100")
        time.sleep(1)  # ovs-vswitchd reconfigures and learns the route to A
        in_b("ovs-appctl", "-t", f"{rundir}/vswitchd.ctl", "tnl/arp/set", "br-phy", A_IP, a_mac)
        for zero in (True, False):
            r = pair.call(pair.a, "check", kind=kind, zero_csum=zero)
            r["partner"] = version
            results.append((f"ovs-userspace {kind} zero_csum={zero}", r))
        if kind != "gre":
            # Diagnosis, not advice: with A's veth checksumming in software the outer
            # UDP checksum leaves A complete instead of CHECKSUM_PARTIAL; does OVS,
            # reading the veth with AF_PACKET, then take it?
            run(["ip", "netns", "exec", pair.a, "ethtool", "-K", pair.veth_a, "tx", "off"])
            try:
                r = pair.call(pair.a, "check", kind=kind, zero_csum=False)
            finally:
                run(["ip", "netns", "exec", pair.a, "ethtool", "-K", pair.veth_a, "tx", "on"])
            results.append((f"ovs-userspace {kind} zero_csum=False A-veth-tx-csum=off", r))
        vsctl("del-port", "br-int", "t0")
    return results


def _gre_kernel_support() -> str:
    try:
        import gzip
        with gzip.open("/proc/config.gz", "rt") as f:
            lines = [ln.strip() for ln in f if "IPGRE" in ln]
        return "; ".join(lines) or "no IPGRE options in /proc/config.gz"
    except OSError:
        return "unknown (no /proc/config.gz)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--only", default="send,recv,gso,kgso,vxlan,gre,headers,ovs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--args", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](**json.loads(args.args))), flush=True)
        return 0
    if os.geteuid() != 0:
        print("udpcost: needs root (network namespaces)", file=sys.stderr)
        return 1
    def stop(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)  # `kill` cleans up too, as Ctrl-C does
    res = Resources()
    try:
        pair = Pair(res)
        results = measure(pair, set(args.only.split(",")), args.seconds)
    except (KeyboardInterrupt, Exception) as exc:  # report in one line; cleanup below
        print(f"udpcost: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        problems = res.close()
        if problems:
            print("udpcost: could not remove: " + "; ".join(problems), file=sys.stderr)
    for name, r in results:
        print(f"{name:44s} {json.dumps(r)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
