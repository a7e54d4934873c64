"""`make demo`: patch ports vs veth pairs between two ovslite bridges, measured and captured.

    python integration/demo.py [--quick] [--keep] [--json PATH] [--results-dir DIR]
    python integration/demo.py --teardown DIR      (after --keep)

Builds h1 - br-a - link - br-b - h2 with a private ovslited (its own --db and
--socket in /tmp/ovslite-demo-<tag>), the link first a patch port pair, then a
veth pair added as two `system` ports (seed 001's br-int / br-eth1 picture).
For each link it measures TCP throughput, the 64-byte frame rate, ping
latency and ovslited's CPU per frame (with integration/bench's measurement
code, see demo_bench.py), shows what tcpdump and `ovslite-ctl capture` can
see, then prints a side-by-side table, a reading generated from the numbers
and the path of a PNG chart. Every command that builds the topology is
echoed after "$". Everything it made is removed at the end, on failure and
on Ctrl-C / SIGTERM / SIGHUP too, unless --keep (then it prints how to
explore and how to tear down). docs/demo.md explains the output.

Exit status: 0 done; 1 a step failed; 2 this machine cannot run the demo
(one line on stderr says why); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import secrets
import shlex
import shutil
import signal
import sys
import textwrap
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script (make demo): make `integration` importable
    sys.path.insert(0, str(REPO))

from integration import demo_capture, demo_keep, demo_report  # noqa: E402
from integration.demo_bench import (  # noqa: E402
    PREFIX,
    Budget,
    CommandError,
    DemoResources,
    LiveStep,
    Ovslite,
    Progress,
    connectivity,
    make_host,
    measure_link,
    run,
    signals_ignored,
    write_json,
)

BIN = Path(sys.executable).parent
CTL = BIN / "ovslite-ctl"
DAEMON = BIN / "ovslited"
SUBNET = "10.66.0"
#: command: Debian package, for what the demo runs
TOOLS = {"ip": "iproute2", "ping": "iputils-ping", "iperf3": "iperf3", "trafgen": "netsniff-ng",
         "tcpdump": "tcpdump", "ss": "iproute2", "timeout": "coreutils", "sysctl": "procps"}


# -- preflight ----------------------------------------------------------------------
def preflight(tag: str) -> str | None:
    """None if the demo can run here, else one line saying what is missing."""
    if os.geteuid() != 0:
        return "run me as root (sudo make demo): the demo creates network namespaces, veth pairs and TAP devices"
    missing = sorted({f"{tool} (apt-get install {pkg})" for tool, pkg in TOOLS.items()
                      if shutil.which(tool) is None})
    if missing:
        return f"missing {', '.join(missing)}; `make demo` installs them via `make install`"
    try:
        os.close(os.open("/dev/net/tun", os.O_RDWR))
    except OSError as exc:
        return (f"cannot open /dev/net/tun ({exc.strerror}): ovslite's bridges need TAP devices "
                f"(modprobe tun; in a container, pass /dev/net/tun through)")
    problem = namespaces_and_install(tag, "demo")
    if problem:
        return problem
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed in this Python (for the chart): run `make install`"
    return None


def namespaces_and_install(tag: str, target: str) -> str | None:
    """None if a namespace can be made and ovslite is installed, else one line
    (the part of a demo's preflight every demo shares; `target`: its make target)."""
    probe = f"{PREFIX}{tag}-probe"
    proc = run(["ip", "netns", "add", probe], check=False)
    if proc.returncode != 0:
        return f"cannot create network namespaces (`ip netns add` failed: {proc.stderr.strip()})"
    run(["ip", "netns", "del", probe], check=False)
    for script in (CTL, DAEMON):
        if not script.exists():
            return f"{script} not found: run `make install` (or `make {target}`) first"
    return None


def cpu_busy(over: float = 0.5) -> float:
    """Fraction of all CPUs' time spent not idle during the next `over` seconds (/proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return sum(fields[:8]), fields[3] + fields[4]  # total without guest; idle + iowait

    total0, idle0 = sample()
    time.sleep(over)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


# -- the demo -----------------------------------------------------------------------
class Demo:
    def __init__(self, args: argparse.Namespace, tag: str, workdir: str):
        self.args = args
        self.budget = Budget(args.quick)
        self.res = DemoResources(tag)
        self.tag = tag
        self.dir = workdir
        self.socket = os.path.join(workdir, "ovslite.sock")
        n = self.res.link_name
        self.names = {"br_a": n("br-a"), "br_b": n("br-b"), "patch_a": n("patch-a"),
                      "patch_b": n("patch-b"), "veth_a": n("veth-a"), "veth_b": n("veth-b")}
        self.commands: list[str] = []
        self.daemon: Ovslite | None = None
        self.h1 = self.h2 = None
        self.links: dict[str, dict] = {}
        self.capture: dict[str, dict] = {}
        self.progress = Progress(2, stream=sys.stdout)

    # -- output and commands ---------------------------------------------------------
    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def echo(self, display: str) -> None:
        self.commands.append(display)
        self.say(f"  $ {display}")

    def para(self, text: str) -> None:
        self.say(_wrap(text, "  "))

    def output(self, lines) -> None:
        for line in lines:
            self.say(f"    {line}")

    def sh(self, cmd: list[str], check: bool = True, show: bool = True, display: str | None = None,
           timeout: float = 30):
        """Echo `cmd` (or `display`), run it, show its output; CommandError if it fails and `check`."""
        self.echo(display or shlex.join(cmd))
        proc = run(cmd, check=False, timeout=timeout)
        if show:
            self.output((proc.stdout + proc.stderr).rstrip().splitlines())
            if proc.returncode != 0:
                self.say(f"    (exit status {proc.returncode})")
        if check and proc.returncode != 0:
            said = [x for x in (proc.stderr + "\n" + proc.stdout).splitlines() if x.strip()]
            raise CommandError(f"{display or shlex.join(cmd)}: exit {proc.returncode}"
                               + (f": {said[-1].strip()[:300]}" if said else ""))
        return proc

    def ctl_argv(self, *args: str) -> list[str]:
        return [str(CTL), "--socket", self.socket, *args]

    def ctl_display(self, *args: str) -> str:
        return shlex.join(["ovslite-ctl", "--socket", self.socket, *args])

    def ctl(self, *args: str, check: bool = True, show: bool = True):
        return self.sh(self.ctl_argv(*args), check=check, show=show, display=self.ctl_display(*args))

    # -- steps -----------------------------------------------------------------------
    def run(self) -> None:
        b, nm = self.budget, self.names
        self.say(f"ovslite demo {self.tag} ({'quick' if self.args.quick else 'full'}: per link "
                 f"{b.pings} pings, {b.tcp_seconds:g} s of TCP, {b.rate_seconds:g} s of 64-byte frames)")
        self.say(_wrap(
            f"h1 ({SUBNET}.1) - br-a - link - br-b - h2 ({SUBNET}.2): the link is first a patch port "
            f"pair, then a veth pair added as two system ports (seed 001: OpenStack's br-int - "
            f"br-eth1). Every name starts with {PREFIX}{self.tag}- so nothing collides with what this "
            f"machine has; the daemon is a private one (its own --db and --socket in {self.dir}), "
            f"never a system ovslite. Commands are shown after $ so you can repeat them by hand; "
            f"ovslited and ovslite-ctl are in {BIN}.", "  "))
        self.say("\n== 1. A private daemon, two bridges, two hosts ==")
        self.daemon = Ovslite(self.res, self.dir)
        self.echo(shlex.join([str(DAEMON), "--db", self.daemon.db, "--socket", self.daemon.socket,
                              "--log-format", "json"]) + f" > {self.daemon.log} 2>&1 &")
        self.daemon.start()
        self.res.links += [nm["br_a"], nm["br_b"]]  # internal ports: the daemon removes them, sweep anyway
        self.ctl("add-br", nm["br_a"])
        self.ctl("add-br", nm["br_b"])
        self.h1 = make_host(self.res, self.sh, "h1", f"{SUBNET}.1")
        self.h2 = make_host(self.res, self.sh, "h2", f"{SUBNET}.2")
        self.ctl("add-port", nm["br_a"], self.h1.port)
        self.ctl("add-port", nm["br_b"], self.h2.port)

        self.say("\n== 2. Link 1: a patch port pair ==")
        self.ctl("add-port", nm["br_a"], nm["patch_a"], "--type", "patch", "--peer", nm["patch_b"])
        self.ctl("add-port", nm["br_b"], nm["patch_b"], "--type", "patch", "--peer", nm["patch_a"])
        self.measure("patch")
        self.capture["patch"] = demo_capture.patch_link(self)

        self.say("\n== 3. Link 2: a veth pair, added as two system ports ==")
        self.ctl("del-port", nm["br_a"], nm["patch_a"])
        self.ctl("del-port", nm["br_b"], nm["patch_b"])
        self.res.links += [nm["veth_a"], nm["veth_b"]]
        self.sh(["ip", "link", "add", nm["veth_a"], "type", "veth", "peer", "name", nm["veth_b"]])
        for end in (nm["veth_a"], nm["veth_b"]):  # no IPv6 chatter from the root namespace on the link
            self.sh(["sysctl", "-q", "-w", f"net.ipv6.conf.{end}.disable_ipv6=1"])
        self.ctl("add-port", nm["br_a"], nm["veth_a"])
        self.ctl("add-port", nm["br_b"], nm["veth_b"])
        self.measure("veth")
        self.capture["veth"] = demo_capture.veth_link(self)

    def measure(self, link: str) -> None:
        self.ctl("show")
        self.say(_wrap(f"h1 pings h2 until the switch forwards (then static ARP entries on both "
                       f"hosts, so no ARP disturbs the figures); measuring the {link} link:", "  "))
        self.progress.start(f"{link} link")
        try:
            with LiveStep(self.progress) as step:
                step("h1 pings h2")
                connectivity(self.h1, self.h2)
                m = measure_link(self.h1, self.h2, self.daemon.pids(), self.dir, self.budget, step)
        except BaseException as exc:
            self.progress.fail(str(exc) or type(exc).__name__)
            raise
        self.links[link] = m
        self.progress.done(f"TCP {m['tcp_gbps']:.2f} Gbit/s, 64 B {m['rate_fps'] / 1e3:.0f}k frames/s, "
                           f"RTT p50/p99 {m['lat_p50_us']:.0f}/{m['lat_p99_us']:.0f} us, "
                           f"CPU {m['cpu_s_per_mframe']:.2f} us/frame")

    def report(self, doc: dict, results_dir: str) -> None:
        self.say("\n== 4. Results: patch link vs veth link ==")
        for line in demo_report.table(self.links):
            self.say(f"  {line}")
        self.say("")
        doc["reading"] = demo_report.reading(self.links, self.names, doc["machine"], self.capture)
        for para in doc["reading"]:
            self.say(_wrap(para, "  "))
            self.say("")
        self.say("  Capture: who saw the ping frames crossing each link")
        for line in demo_capture.summary_table(self.capture):
            self.say(f"    {line}")
        stem = os.path.join(results_dir, f"demo-{doc['started']}-{self.tag}")
        os.makedirs(results_dir, exist_ok=True)
        try:
            demo_report.write_png(doc, stem + ".png")
            doc["chart"] = stem + ".png"
            self.say(f"\n  chart: {doc['chart']}")
        except Exception as exc:  # a chart problem must not lose the figures
            doc["chart_error"] = f"{type(exc).__name__}: {exc}"
            self.say(f"\n  chart failed: {doc['chart_error']}")

    def diagnose(self) -> None:
        """After a failure: the daemon's view (per-port counters) and its log's last lines, on stderr."""
        if self.daemon.pids():
            for br in (self.names["br_a"], self.names["br_b"]):
                proc = run(self.ctl_argv("dump-ports", br), check=False, timeout=10)
                print((proc.stdout or proc.stderr).rstrip(), file=sys.stderr)
        elif self.daemon.proc is not None:
            print(f"ovslited is not running (exit status {self.daemon.proc.returncode})", file=sys.stderr)
        tail = self.daemon.log_tail(1500).strip()
        if tail:
            print(f"ovslited log (last lines):\n{tail}", file=sys.stderr)

    # -- the end: clean up, or keep ----------------------------------------------------
    def cleanup(self) -> list[str]:
        pid = self.daemon.proc.pid if self.daemon is not None and self.daemon.proc else None
        self.res.dirs.append(self.dir)
        problems = self.res.close()
        left = demo_keep.leftovers(self.tag, self.dir)
        self.say("\n== Cleaning up ==")
        what = [f"stopped ovslited (pid {pid})"] if pid else []
        what.append(f"removed namespaces and links {PREFIX}{self.tag}-*")
        what.append(f"and {self.dir}")
        self.say("  " + ", ".join(what) + (": nothing left behind." if not (problems or left) else "."))
        for p in problems + [f"left behind: {x}" for x in left]:
            self.say(f"  PROBLEM: {p}")
        return problems + left


def _wrap(text: str, indent: str, width: int = 100) -> str:
    return textwrap.fill(text, width, initial_indent=indent, subsequent_indent=indent)


# -- signals, main ------------------------------------------------------------------
class Interrupted(KeyboardInterrupt):
    pass


def _raise_interrupt(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="demo.py", description="ovslite: patch ports vs veth pairs, "
                                "measured and captured (docs/demo.md).")
    p.add_argument("--quick", action="store_true", help="about one second per measurement")
    p.add_argument("--keep", action="store_true",
                   help="leave the topology and the daemon up, and print how to explore and tear down")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--results-dir", metavar="DIR", default=str(REPO / "demo-results"),
                   help="where the chart and results JSON go (default: demo-results/ in the repo)")
    p.add_argument("--teardown", metavar="DIR", help="remove what a --keep run left (its directory)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.teardown:
        return demo_keep.teardown(args.teardown)
    tag = secrets.token_hex(2)
    why = preflight(tag)
    if why:
        print(f"demo: {why}", file=sys.stderr)
        return 2
    while True:  # a private directory; the tag makes it unique (retry on the rare clash)
        workdir = f"/tmp/ovslite-demo-{tag}"
        try:
            os.mkdir(workdir, 0o700)
            break
        except FileExistsError:
            tag = secrets.token_hex(2)
    t0 = time.monotonic()
    doc = {"tag": tag, "quick": args.quick, "keep": args.keep,
           "started": datetime.datetime.now().strftime("%Y%m%d-%H%M%S"),
           "machine": {"kernel": platform.release(), "cpus": os.cpu_count(),
                       "loadavg_start": os.getloadavg(), "busy_start": cpu_busy()},
           "dir": workdir, "error": None}
    demo = Demo(args, tag, workdir)
    # SIGINT too: started in the background without job control it would be ignored.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _raise_interrupt)
    rc = 0
    try:
        demo.run()
        doc["links"] = demo.links
        doc["ratios"] = demo_report.ratios(demo.links)
        demo.report(doc, args.results_dir)
    except KeyboardInterrupt as exc:
        rc, doc["error"] = 130, f"interrupted by {exc or 'SIGINT'}"
    except Exception as exc:
        rc, doc["error"] = 1, f"{type(exc).__name__}: {exc}" if not isinstance(exc, CommandError) else str(exc)
        if not isinstance(exc, CommandError | RuntimeError):
            traceback.print_exc()
        if demo.daemon is not None:
            with contextlib.suppress(Exception):  # diagnostics must not hide the failure
                demo.diagnose()
    finally:
        with signals_ignored():
            if args.keep and rc == 0:
                doc["teardown"] = demo_keep.keep(demo, str(REPO / "integration" / "demo.py"), str(CTL))
                doc["leftovers"] = []
            else:
                doc["leftovers"] = demo.cleanup()
    doc.update(links=demo.links, capture=demo.capture, names=demo.names, commands=demo.commands,
               elapsed_s=round(time.monotonic() - t0, 1))
    doc["machine"]["loadavg_end"] = os.getloadavg()
    doc["namespaces"] = {"h1": demo.h1.ns if demo.h1 else None, "h2": demo.h2.ns if demo.h2 else None}
    if "chart" in doc:
        write_json(doc, doc["chart"][:-4] + ".json")
    if args.json:
        write_json(doc, args.json)
    if doc["error"]:
        tail = ("everything it made was removed" if not doc["leftovers"]
                else f"LEFT BEHIND: {', '.join(doc['leftovers'])}")
        head = doc["error"] if rc == 130 else f"failed: {doc['error']}"
        print(f"demo: {head} (after {doc['elapsed_s']:.0f} s; {tail})", file=sys.stderr)
        return rc
    if doc["leftovers"] or doc.get("chart_error"):
        return 1
    print(f"\ndemo finished in {doc['elapsed_s']:.0f} s" + (f"; results: {doc['chart'][:-4]}.json"
                                                             if "chart" in doc else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
