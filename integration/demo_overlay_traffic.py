"""The traffic steps of `make demo-overlay` (integration/demo_overlay.py): the
broadcast count, TCP, and the restart under a steady flow.

Each step echoes its commands through the demo (so a user can repeat them),
prints what it saw and returns its figures for the JSON document. Background
processes are started through the demo's Resources (their own session, so a
Ctrl-C reaches only the demo, which stops them) and released when done.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from integration.demo import CTL
from integration.demo_bench import CommandError, run, wait_for

FLOW = str(Path(__file__).with_name("flow.py"))
RATE = 10000
#: the restart happens this long after the flow started
RESTART_AT = 2.0
RESTART_TIMEOUT = 20.0


def ping_summary(text: str, count: int) -> dict:
    """iputils ping -q output: how many replies, and the average RTT."""
    m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
    rtt = re.search(r"= [\d.]+/([\d.]+)/", text)
    return {"sent": int(m.group(1)) if m else count, "received": int(m.group(2)) if m else 0,
            "rtt_avg_ms": float(rtt.group(1)) if rtt else None}


def background(demo, cmd: list[str], display: str | None = None) -> subprocess.Popen:
    demo.echo((display or shlex.join(cmd)) + " &")
    return demo.res.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(demo, proc: subprocess.Popen, sig: int | None = None, timeout: float = 30) -> tuple[str, str]:
    """Stop `proc` with `sig` (or let it end), and forget it; (stdout, stderr)."""
    if sig is not None and proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        demo.res.release(proc)
    return out, err


def wait_line(proc: subprocess.Popen, stream, needle: str, timeout: float = 10) -> None:
    """Read `stream` of `proc` until `needle` shows (raw reads: a text reader's
    buffer could hold the line where select() no longer sees it)."""
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    seen = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 4096)
            seen += chunk.decode(errors="replace")
            if needle in seen:
                return
            if not chunk:
                break
        elif proc.poll() is not None:
            break
    raise CommandError(f"{shlex.join(proc.args)}: no {needle!r} within {timeout:g}s: {seen.strip()[:300]}")


def port_stats(demo) -> dict[str, dict]:
    """{"h1 vx-h2": that port's dump-ports counters} for every port of every host."""
    out = {}
    for host in demo.hosts:
        proc = run([str(CTL), "--socket", host.daemon.socket, "--format", "json",
                    "dump-ports", "br-tun"], timeout=20)
        doc = json.loads(proc.stdout)
        for port in doc["ports"] if isinstance(doc, dict) else doc:
            out[f"{host.name} {port['name']}"] = port["stats"]
    return out


def tunnel_counters(demo) -> dict[str, dict[str, int]]:
    """{"h1 vx-h2": {"rx": n, "tx": n}} for every vxlan port of every host."""
    return {name: {"rx": stats["rx_packets"], "tx": stats["tx_packets"]}
            for name, stats in port_stats(demo).items() if name.split()[1].startswith("vx-")}


def stale_drops(demo) -> dict[str, int]:
    """Frames each port dropped as `stale` (waited over 0.2 s behind a stall), where any."""
    return {name: stats.get("drops", {}).get("stale", 0) for name, stats in port_stats(demo).items()
            if stats.get("drops", {}).get("stale")}


def broadcast(demo) -> dict:
    """One broadcast from c1: tcpdump (incoming frames only) in each container counts it."""
    demo.para("A broadcast ping from c1 (ping -b: one frame to ff:ff:ff:ff:ff:ff; the containers "
              "ignore broadcast pings, so nothing answers). h1 sends one copy to each remote "
              "(head-end replication); h2 and h3 deliver it to their container only, never back "
              "into a tunnel (split horizon), so each container sees it once and c1 not at all:")
    caps = {}
    for host in demo.hosts:
        cmd = host.in_container("tcpdump", "-n", "-l", "-i", "eth0", "-Q", "in", "ether broadcast and icmp")
        caps[host] = background(demo, cmd)
    for proc in caps.values():
        wait_line(proc, proc.stderr, "listening on")
    before = tunnel_counters(demo)
    src = demo.hosts[0]
    demo.sh(src.in_container("ping", "-b", "-n", "-c", "1", "-W", "1", f"{src.ip.rsplit('.', 1)[0]}.255"),
            check=False, show=False)
    time.sleep(1.0)
    counts, lines = {}, {}
    for host, proc in caps.items():
        out, err = finish(demo, proc, signal.SIGINT)
        lines[f"c{host.n}"] = [x for x in out.splitlines() if x.strip()]
        counts[f"c{host.n}"] = len(lines[f"c{host.n}"])
    for name, got in lines.items():
        demo.output([f"tcpdump in {name}: {len(got)} frame{'s' if len(got) != 1 else ''}"]
                    + [f"  {x}" for x in got])
    after = tunnel_counters(demo)
    demo.para("The tunnel ports' counters (packets) before and after the broadcast:")
    deltas = {k: {d: after[k][d] - before[k][d] for d in ("rx", "tx")} for k in after}
    demo.output(f"{k}: rx +{v['rx']}, tx +{v['tx']}" for k, v in deltas.items())
    time.sleep(2.0)
    idle = tunnel_counters(demo)
    moved = {k: {d: idle[k][d] - after[k][d] for d in ("rx", "tx")} for k in idle if idle[k] != after[k]}
    demo.output([f"2 s later: {'unchanged: nothing circulates between the hosts' if not moved else 'CHANGED'}"]
                + [f"  {k}: rx +{v['rx']}, tx +{v['tx']}" for k, v in moved.items()])
    return {"counts": counts, "lines": lines, "tunnel_deltas": deltas, "idle_unchanged": not moved,
            "idle_moved": moved}


def tcp(demo, a, b, seconds: int) -> dict:
    server = background(demo, b.in_container("iperf3", "-s", "-1"))
    wait_for(lambda: ":5201" in run(b.in_container("ss", "-ltn")).stdout, 10, "iperf3 listening")
    proc = demo.sh(a.in_container("iperf3", "-c", b.ip, "-t", str(seconds), "-J"), check=False,
                   show=False, timeout=seconds + 30)
    finish(demo, server, signal.SIGTERM if server.poll() is None else None, timeout=10)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise CommandError(f"iperf3 printed no JSON: {(proc.stderr or proc.stdout).strip()[:300]}") from None
    if "error" in report:
        raise CommandError(f"iperf3: {report['error']}")
    got = report["end"]["sum_received"]
    sent = report["end"]["sum_sent"]
    gbps = got["bits_per_second"] / 1e9
    demo.output([f"c{a.n} -> c{b.n}: {gbps:.2f} Gbit/s over {got['seconds']:.1f} s "
                 f"({got['bytes'] / 1e6:.0f} MB, {sent.get('retransmits', 0)} retransmits)"])
    return {"gbps": gbps, "bytes": got["bytes"], "retransmits": sent.get("retransmits", 0)}


def started_records(daemon) -> list[dict]:
    return [r for r in daemon.log_records() if r.get("event") == "started"]


def restart_under_traffic(demo, seconds: float) -> dict:
    h1, h2, h3 = demo.hosts
    pid = h1.daemon.proc.pid
    demo.para(f"c2 sends {RATE:,} numbered frames/s to c1 for {seconds:g} s (integration/flow.py; they "
              f"cross the tunnel h2 -> h1 and c1 counts them), while c1 pings c3 every 10 ms "
              f"(out of h1 through the tunnel h1 -> h3, and back). {RESTART_AT:g} s in, h1's ovslited "
              f"(pid {pid}) restarts: SIGUSR2, the restart in place. The daemon hands its ports' fds "
              f"(the tunnels' UDP receive socket, the container port's packet sockets) to the next "
              f"instance, which is what `systemctl restart` does through systemd's fd store "
              f"(docs/service.md); frames arriving meanwhile wait in those sockets.")
    tag = secrets.token_hex(4)
    stale_base = stale_drops(demo)
    counter = background(demo, h1.in_container(sys.executable, FLOW, "count", "eth0", tag),
                         shlex.join(h1.in_container("python3", FLOW, "count", "eth0", tag)))
    wait_line(counter, counter.stdout, "counting")
    pings = int(seconds * 100)
    pinger = background(demo, h1.in_container("ping", "-n", "-q", "-i", "0.01", "-c", str(pings), "-W", "5",
                                              h3.ip))
    sender = background(demo, h2.in_container(sys.executable, FLOW, "send", "eth0", h1.mac, tag,
                                              str(RATE), str(seconds)),
                        shlex.join(h2.in_container("python3", FLOW, "send", "eth0", h1.mac, tag,
                                                   str(RATE), str(seconds))))
    time.sleep(RESTART_AT)
    stale_before = stale_drops(demo)  # h1's counters start again at zero
    before = len(started_records(h1.daemon))
    demo.echo(f"kill -USR2 {pid}")
    t0 = time.monotonic()
    os.kill(pid, signal.SIGUSR2)
    wait_for(lambda: len(started_records(h1.daemon)) > before or h1.daemon.proc.poll() is not None,
             RESTART_TIMEOUT, "h1's ovslited to start again", interval=0.02)
    took = time.monotonic() - t0
    if h1.daemon.proc.poll() is not None:
        raise CommandError(f"h1's ovslited exited {h1.daemon.proc.returncode} on SIGUSR2: "
                           f"{h1.daemon.log_tail(500)}")
    reattached = started_records(h1.daemon)[-1].get("reattached")
    out, err = finish(demo, sender, timeout=seconds + 30)
    if sender.returncode != 0:
        raise CommandError(f"flow.py send failed: {err.strip()[:300]}")
    sent = json.loads(out)
    time.sleep(1.0)  # the last frames, and a backlog still being forwarded
    out, err = finish(demo, counter, signal.SIGTERM)
    got = json.loads(out.strip().splitlines()[-1])
    ping_out, _ = finish(demo, pinger, timeout=seconds + 20)
    ping = ping_summary(ping_out, pings)
    flow = {**sent, **got, "lost": sent["sent"] - got["distinct"]}
    # h2's and h3's counters run on; h1's start again at zero with the new instance
    flow["stale"] = (sum(stale_drops(demo).values()) - sum(stale_base.values())
                     + sum(v for k, v in stale_before.items() if k.startswith("h1 ")))
    demo.output([
        f"h1's ovslited was back (its `started` log line) {took:.2f} s after SIGUSR2, same pid {pid}, "
        f"{reattached} ports re-attached to their handed-over fds",
        f"c2 -> c1, {flow['sent'] / flow['seconds']:,.0f} frames/s across the tunnel: {flow['lost']} of "
        f"{flow['sent']:,} lost, {flow['duplicates']} duplicated, {flow['reordered']} out of order"
        + (f" ({flow['stale']} of them dropped as `stale` by a sending port: its daemon fell behind, "
           f"the frames waited over 0.2 s; dump-ports counts them)" if flow["stale"] else ""),
        f"c1 -> c3 ping every 10 ms: {ping['sent'] - ping['received']} of {ping['sent']} lost"])
    demo.hctl(h1, "show")
    return {"method": "SIGUSR2 (restart in place, the fd hand-over of systemctl restart)",
            "took_s": round(took, 2), "pid": pid, "reattached": reattached, "flow": flow, "ping": ping}


def summary(demo) -> None:
    doc = demo.doc
    demo.say("\n== 8. What this showed ==")
    pings = ", ".join(f"{p['src']}-{p['dst']} {p['received']}/{p['sent']}" for p in doc["pings"])
    counts = ", ".join(f"{k} {v}" for k, v in doc["broadcast"]["counts"].items())
    restart = doc["restart"]
    flow, ping = restart["flow"], restart["ping"]
    for line in (
            f"pings between every pair: {pings}",
            f"one broadcast from c1, frames received: {counts}; afterwards the tunnel counters "
            f"{'stood still (no loop)' if doc['broadcast']['idle_unchanged'] else 'kept moving'}",
            f"TCP c1 -> c2 across the vxlan mesh: {doc['tcp']['gbps']:.2f} Gbit/s",
            f"h1's ovslited restarted in place (SIGUSR2) in {restart['took_s']:.2f} s under traffic: "
            f"{flow['lost']} of {flow['sent']:,} frames lost crossing the tunnel into h1, "
            f"{ping['sent'] - ping['received']} of {ping['sent']} pings c1 -> c3 lost"):
        demo.say(f"  - {line}")
