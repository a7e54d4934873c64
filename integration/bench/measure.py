"""The measurements: TCP throughput, 64-byte forwarding rate, latency, CPU and memory.

Design notes (why each is done this way):
- TCP: iperf3 -J between the two namespaces; the figure is the receiver's
  sum (end.sum_received), so frames the switch dropped never count.
- 64-byte rate: trafgen on one CPU (-P1) blasts a fixed 60-byte frame (64
  on the wire with the FCS): valid IPv4 header checksum (csumip) and UDP
  checksum (csumudp), destination MAC = h2's, so after the pre-ping it is
  known unicast. The destination IP is an unused address in h2's subnet:
  h2 counts the frame in rx_packets and its IP layer drops it quietly
  (forwarding is off), instead of answering each frame with ICMP that would
  load the switch in the other direction. The rate is sampled over a steady
  window: counters are read after a warm-up and again `duration` seconds
  later while trafgen still runs, so neither start-up nor the drain of the
  switch's queues after the sender stops is counted.
- trafgen is told not to retune global socket memory (--no-sock-mem) nor IRQ affinity
  (--notouch-irq): the machine is shared.
- Latency: ping's per-reply time= (kernel receive timestamps, 1 us
  resolution), one request every 5 ms, percentiles by nearest rank. Taken
  unpinned and under two fixed placements, ping and the switch on one CPU
  ("same") or on two ("cross"): a ping through a userspace switch costs
  mostly the wake-ups between the two, which on a VM are far dearer across
  CPUs, so unpinned figures follow wherever the scheduler put them.
- CPU: utime+stime of the switch process (all its threads) over the same
  window as the rate, per million delivered frames. Memory: VmHWM.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import time

from .hosts import Host
from .resources import CommandError, wait_for

CLK_TCK = os.sysconf("SC_CLK_TCK")
IPERF_PORT = 5201
UNUSED_IP_SUFFIX = 254


# -- process accounting -------------------------------------------------------
def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def peak_rss_mib(pids: list[int]) -> float | None:
    if not pids:
        return None
    total_kib = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


# -- TCP ----------------------------------------------------------------------
def tcp_throughput(h1: Host, h2: Host, seconds: float, streams: int,
                   connect_timeout: float | None = None) -> float:
    """Gbit/s received by h2 from h1 over `seconds` with `streams` parallel connections;
    `connect_timeout` (s) bounds the wait for iperf3's control connection."""
    bound = ("--connect-timeout", str(int(connect_timeout * 1000))) if connect_timeout else ()
    server = h2.popen("iperf3", "-s", "-1", "-B", h2.ip, "-p", str(IPERF_PORT))
    try:
        wait_for(lambda: h2.run("ss", "-Hltn", f"sport = :{IPERF_PORT}").stdout.strip()
                 or server.poll() is not None, 10, "iperf3 server to listen")
        if server.poll() is not None:
            raise CommandError(f"iperf3 server exited with {server.returncode}")
        out = h1.run("iperf3", "-c", h2.ip, "-p", str(IPERF_PORT), "-t", f"{seconds:g}",
                     "-P", str(streams), "-J", *bound, check=False, timeout=seconds + 30).stdout
    finally:
        h1.res.release(server)
    try:
        doc = json.loads(out)
    except ValueError:
        raise CommandError(f"iperf3 gave no JSON: {out[:300]!r}") from None
    if "error" in doc:
        raise CommandError(f"iperf3: {doc['error']}")
    return doc["end"]["sum_received"]["bits_per_second"] / 1e9


# -- 64-byte forwarding -----------------------------------------------------
def _mac_bytes(mac: str) -> str:
    return ", ".join(f"0x{b}" for b in mac.split(":"))


def _ip_bytes(ip: str) -> str:
    return ", ".join(ip.split("."))


def trafgen_config(src: Host, dst: Host) -> str:
    unused = ".".join(dst.ip.split(".")[:3] + [str(UNUSED_IP_SUFFIX)])
    return f"""\
# 60-byte UDP/IPv4 frame (64 bytes on the wire with the FCS), written by integration.bench
{{
  {_mac_bytes(dst.mac)},     # destination MAC: h2 (known unicast after the pre-ping)
  {_mac_bytes(src.mac)},     # source MAC: h1
  const16(0x0800),
  0x45, 0x00, const16(46),   # IPv4, IHL 5, total length 20 + 8 + 18
  const16(1), 0x40, 0x00,    # ident, DF
  64, 17, csumip(14, 33),    # TTL, UDP, header checksum over bytes 14..33
  {_ip_bytes(src.ip)},
  {_ip_bytes(unused)},       # unused address in h2's subnet: dropped quietly by h2's IP layer
  const16(9), const16(9), const16(26), csumudp(14, 34),
  fill(0x00, 18),
}}
"""


def _tail(path: str, n: int = 500) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:].strip()
    except OSError:
        return ""


def _sample(h1: Host, h2: Host, pids: list[int]) -> tuple[float, int, int, float]:
    t0 = time.monotonic()
    (tx,) = h1.counters("tx_packets")
    (rx,) = h2.counters("rx_packets")
    cpu = cpu_seconds(pids) if pids else 0.0
    t1 = time.monotonic()
    return (t0 + t1) / 2, tx, rx, cpu


def forwarding_rate(h1: Host, h2: Host, pids: list[int], seconds: float, workdir: str,
                    warmup: float = 0.5) -> dict:
    """Offered and delivered 64-byte frames/s, and the switch's CPU cost, over `seconds`."""
    cfg = os.path.join(workdir, f"trafgen-{h1.role}-{h2.role}.cfg")
    with open(cfg, "w") as f:
        f.write(trafgen_config(h1, h2))
    limit = warmup + seconds + 5  # a bound in case we never get to stop it ourselves
    log_path = cfg[:-4] + ".log"
    with open(log_path, "wb") as log:
        proc = h1.popen("timeout", "-s", "INT", "-k", "3", f"{limit:g}",
                        "trafgen", "--no-sock-mem", "--notouch-irq", "--no-cpu-stats", "--cpus", "1",
                        "--dev", h1.ifname, "--conf", cfg,
                        stdout=log, stderr=log)
    try:
        time.sleep(warmup)
        if proc.poll() is not None:
            raise CommandError(f"trafgen exited early with {proc.returncode}: {_tail(log_path)}")
        t_a, tx_a, rx_a, cpu_a = _sample(h1, h2, pids)
        time.sleep(seconds)
        t_b, tx_b, rx_b, cpu_b = _sample(h1, h2, pids)
        if proc.poll() is not None:
            raise CommandError(f"trafgen stopped before the window ended ({proc.returncode})")
    finally:
        h1.res.release(proc, sig=signal.SIGINT)  # trafgen's own clean stop
    dt = t_b - t_a
    delivered = rx_b - rx_a
    out = {"rate_fps": delivered / dt, "offered_fps": (tx_b - tx_a) / dt}
    if pids:
        cpu = cpu_b - cpu_a
        out["cpu_util"] = cpu / dt
        out["cpu_s_per_mframe"] = cpu / delivered * 1e6 if delivered > 0 else None
    return out


# -- latency ------------------------------------------------------------------
_TIME = re.compile(r"time=([0-9.]+) ms")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def rtts(h1: Host, h2: Host, count: int, interval: float = 0.005, cpu: int | None = None) -> list[float]:
    """Round trips in microseconds of the answered ones of `count` pings from h1 to h2, one
    every `interval` s; ping runs on `cpu` if given. Fewer than half answered is an error."""
    pin = ("taskset", "-c", str(cpu)) if cpu is not None else ()
    out = h1.run(*pin, "ping", "-n", "-i", f"{interval:g}", "-c", str(count), "-W", "1", h2.ip,
                 check=False, timeout=count * interval + 30).stdout
    values = [float(m) * 1000 for m in _TIME.findall(out)]
    if len(values) < max(1, count // 2):
        raise CommandError(f"only {len(values)} of {count} pings answered")
    return values


def summary(values: list[float], sent: int, prefix: str) -> dict:
    """<prefix>_p50_us, <prefix>_p99_us and <prefix>_loss of `values` answered out of `sent`."""
    return {f"{prefix}_p50_us": percentile(values, 50), f"{prefix}_p99_us": percentile(values, 99),
            f"{prefix}_loss": 1 - len(values) / sent}


def latency(h1: Host, h2: Host, count: int, interval: float = 0.005, cpu: int | None = None,
            prefix: str = "lat") -> dict:
    """Round-trip p50/p99 in microseconds from `count` pings, one every `interval` s,
    as <prefix>_p50_us, <prefix>_p99_us and <prefix>_loss; ping runs on `cpu` if given."""
    return summary(rtts(h1, h2, count, interval, cpu), count, prefix)


# -- CPU placement ------------------------------------------------------------
def usable_cpus() -> list[int]:
    """The CPUs this process may run on (a cpuset can hide some of os.cpu_count())."""
    return sorted(os.sched_getaffinity(0))


def _threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return []


def _pin_new(pids: list[int], cpus: set[int], saved: dict[int, dict[int, set[int]]]) -> int:
    """Pin the threads of `pids` not pinned yet, remembering their affinity; how many were."""
    pinned = 0
    for pid in pids:
        for tid in _threads(pid):
            if tid in saved.setdefault(pid, {}):
                continue
            with contextlib.suppress(ProcessLookupError):  # the thread ended meanwhile
                mask = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, cpus)
                saved[pid][tid] = mask
                pinned += 1
    return pinned


def _restore(saved: dict[int, dict[int, set[int]]]) -> None:
    for pid, masks in saved.items():
        # A thread started while pinned inherited the pin: it gets the process's old mask.
        default = masks.get(pid, set(usable_cpus()))
        for tid in _threads(pid):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, masks.get(tid, default))


@contextlib.contextmanager
def pinned(pids: list[int], cpus: set[int]):
    """Every thread of `pids` (ovs-vswitchd has many) on `cpus` for the block; each
    thread's own affinity back afterwards, also on an exception."""
    saved: dict[int, dict[int, set[int]]] = {}
    try:
        # Again until a pass finds no new thread: one may start while we pin the others.
        for _ in range(5):
            if not _pin_new(pids, cpus, saved):
                break
        yield
    finally:
        _restore(saved)
