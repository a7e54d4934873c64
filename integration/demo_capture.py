"""The demo's capture section: who can see the frames crossing each kind of link.

Patch link: there is no kernel device (`ip link show` and `tcpdump -i` both
fail), and `ovslite-ctl capture` taps the port inside ovslited. Veth link:
tcpdump on the veth end in the root namespace sees the frames (the kernel's
packet taps run as the frame enters and leaves the device), and so does
`ovslite-ctl capture`. Each capture is started and confirmed listening before
h1 pings h2, so the lines shown are that ping's request and reply frames.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time

from integration.demo_bench import CommandError, wait_for

PINGS = 3
#: each ping is two frames on the link: the request (br-a -> br-b) and the reply
FRAMES = 2 * PINGS


def _started_captures(demo, port: str) -> int:
    return sum(1 for r in demo.daemon.log_records()
               if r.get("event") == "capture started" and r.get("port") == port)


def start_ctl_capture(demo, port: str) -> subprocess.Popen:
    """`ovslite-ctl capture PORT -c FRAMES` in the background, returned once attached."""
    before = _started_captures(demo, port)
    demo.echo(demo.ctl_display("capture", port, "-c", str(FRAMES)) + " &")
    proc = demo.res.popen([*demo.ctl_argv("capture", port, "-c", str(FRAMES))],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The daemon logs "capture started" once the tap is on the port.
    wait_for(lambda: _started_captures(demo, port) > before or proc.poll() is not None,
             10, f"ovslite-ctl capture on {port} to attach")
    if proc.poll() is not None:
        raise CommandError(f"ovslite-ctl capture {port} exited with {proc.returncode}: "
                           f"{proc.stderr.read().strip()}")
    return proc


def start_tcpdump(demo, ifname: str) -> subprocess.Popen:
    """tcpdump on root-namespace device `ifname`, returned once it says it is listening."""
    cmd = ["timeout", "15", "tcpdump", "-n", "-l", "-i", ifname, "-c", str(FRAMES), "icmp"]
    demo.echo(" ".join(cmd) + " &")
    proc = demo.res.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = b""
    deadline = time.monotonic() + 10
    fd = proc.stderr.fileno()
    while b"listening on" not in head:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise CommandError(f"tcpdump on {ifname} did not start: {head.decode(errors='replace')}")
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 4096)
            head += chunk
    return proc


def finish(demo, proc: subprocess.Popen, timeout: float = 8) -> tuple[list[str], list[str]]:
    """Wait for a bounded capture; if frames were missed, stop it (SIGINT) and take what it has."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        out, err = proc.communicate(timeout=10)
    demo.res.release(proc)
    if isinstance(out, bytes):
        out, err = out.decode(errors="replace"), err.decode(errors="replace")
    return ([line for line in out.splitlines() if line.strip()],
            [line for line in err.splitlines() if line.strip()])


def ping(demo) -> None:
    h1, h2 = demo.h1, demo.h2
    proc = demo.sh(h1.cmd("ping", "-n", "-c", str(PINGS), "-i", "0.2", h2.ip), show=False)
    demo.output([line for line in proc.stdout.splitlines() if "packets transmitted" in line])


def patch_link(demo) -> dict:
    port = demo.names["patch_a"]
    demo.say("  A patch port has no kernel device: nothing for ip or tcpdump to open.")
    link = demo.sh(["ip", "link", "show", port], check=False)
    dump = demo.sh(["timeout", "10", "tcpdump", "-n", "-c", "1", "-i", port], check=False)
    demo.say(f"  ovslite-ctl capture taps the port inside ovslited; h1 pings h2 {PINGS} times:")
    cap = start_ctl_capture(demo, port)
    ping(demo)
    lines, summary = finish(demo, cap)
    demo.output(lines + summary)
    return {"ip_link_rc": link.returncode, "ip_link_output": (link.stdout + link.stderr).strip(),
            "tcpdump_rc": dump.returncode, "tcpdump_output": (dump.stdout + dump.stderr).strip(),
            "tcpdump_lines": [], "ctl_lines": lines, "ctl_summary": summary}


def veth_link(demo) -> dict:
    a = demo.names["veth_a"]
    demo.say("  A veth end is a kernel device: ip shows it, tcpdump can open it.")
    link = demo.sh(["ip", "link", "show", a], check=False)
    demo.say(f"  tcpdump on {a}, ovslite-ctl capture on {a}; h1 pings h2 {PINGS} times:")
    dump = start_tcpdump(demo, a)
    cap = start_ctl_capture(demo, a)
    ping(demo)
    dump_lines, dump_summary = finish(demo, dump, timeout=1)
    cap_lines, cap_summary = finish(demo, cap)
    demo.say(f"  tcpdump -i {a} (requests ovslited sends into the pair, replies it receives):")
    demo.output(dump_lines + [s for s in dump_summary if "captured" in s])
    demo.say(f"  ovslite-ctl capture {a}:")
    demo.output(cap_lines + cap_summary)
    return {"ip_link_rc": link.returncode, "ip_link_output": (link.stdout + link.stderr).strip(),
            "tcpdump_lines": dump_lines, "ctl_lines": cap_lines, "ctl_summary": cap_summary}


def summary_table(capture: dict) -> list[str]:
    def tcpdump_cell(c: dict) -> str:
        if c is None:
            return "not run"
        if c.get("ip_link_rc"):
            return "no device to open"
        return f"{len(c['tcpdump_lines'])} of {FRAMES} frames"

    def ctl_cell(c: dict) -> str:
        return "not run" if c is None else f"{len(c['ctl_lines'])} of {FRAMES} frames"

    p, v = capture.get("patch"), capture.get("veth")
    rows = [("", "patch link", "veth link"),
            ("tcpdump (the kernel's packet tap)", tcpdump_cell(p), tcpdump_cell(v)),
            ("ovslite-ctl capture (in ovslited)", ctl_cell(p), ctl_cell(v))]
    return [f"{a:<36}{b:>20}{c:>24}" for a, b, c in rows]
