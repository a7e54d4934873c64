"""Run the selected cases one after another, report, and always clean up.

Design: each case gets its own `Resources`, closed in a `finally` as soon
as the case ends, so a failing case cannot leak into the next and an
interruption leaves at most one case's worth to remove. SIGINT, SIGTERM
and SIGHUP are turned into KeyboardInterrupt, so every
way of stopping the bench goes through the same `finally`; while cleaning
up, those signals are ignored so a second Ctrl-C cannot cut removal short.
A failed case is recorded with its error and the run goes on; the exit
status is 1 if any case failed or anything was left behind, 130 if
interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

from . import latpairs, report
from .cases import Case, Settings, select
from .progress import Progress
from .resources import CommandError, Resources, leftovers, run

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TOOLS = {"ip": "iproute2", "ping": "iputils-ping", "iperf3": "iperf3", "trafgen": "netsniff-ng",
         "ss": "iproute2", "timeout": "coreutils", "ethtool": "ethtool"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m integration.bench",
                                description="Benchmark ovslite against the Linux bridge and OVS.")
    p.add_argument("--quick", action="store_true", help="about one second per measurement")
    p.add_argument("--only", metavar="NAME,...",
                   help="cases or groups to run (e.g. linux,ovs,ovslite or core,scaling,overlay); "
                        "--list shows them")
    p.add_argument("--json", metavar="PATH", help="also write the results JSON to PATH")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    return p.parse_args(argv)


def preflight() -> str | None:
    if os.geteuid() != 0:
        return "the bench needs root (network namespaces, veth, AF_PACKET)"
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        return f"missing Debian packages: {' '.join(missing)} (make deps-system installs them)"
    return None


class _Interrupted(KeyboardInterrupt):
    pass


def _raise_interrupt(signum, frame):
    raise _Interrupted(f"signal {signum}")


@contextlib.contextmanager
def signals_ignored():
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def _summary(m: dict) -> str:
    parts = []
    if "tcp1_gbps" in m:
        parts.append(f"tcp {m['tcp1_gbps']:.2f}/{m.get('tcp4_gbps', 0):.2f} Gbit/s")
    if m.get("rate_fps") is not None:
        parts.append(f"64B {m['rate_fps'] / 1e3:.0f}k/{m.get('offered_fps', 0) / 1e3:.0f}k fps")
    if m.get("lat_p50_us") is not None:
        parts.append(f"rtt {m['lat_p50_us']:.0f}/{m['lat_p99_us']:.0f} us")
    if m.get("fdb_entries") is not None:
        parts.append(f"fdb {m['fdb_entries']}")
    parts.append(latpairs.progress_summary(m))
    return ", ".join(p for p in parts if p)


def check_figures(case: Case, metrics: dict) -> list[str]:
    """Expected figures that are missing or not positive."""
    bad = []
    for key in case.expected:
        value = metrics.get(key)
        if value is None and key in case.na:
            continue
        if not isinstance(value, int | float) or value <= 0:
            bad.append(f"{key}={value!r}")
    return bad


def run_case(case: Case, tag: str, settings: Settings, progress: Progress) -> dict:
    result = {"name": case.name, "group": case.group, "label": case.label, "params": case.params,
              "metrics": {}, "notes": [], "error": None}
    res = Resources(tag)
    started = time.monotonic()
    progress.start(case.name)
    try:
        metrics, notes = case.fn(res, settings, progress.step)
        result["metrics"], result["notes"] = metrics, notes
        bad = check_figures(case, metrics)
        if bad:
            result["error"] = f"missing or non-positive figures: {', '.join(bad)}"
    except KeyboardInterrupt:
        result["error"] = "interrupted"
        raise
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, CommandError | RuntimeError):
            result["traceback"] = traceback.format_exc()
    finally:
        with signals_ignored():
            progress.step("cleaning up")
            problems = res.close()
        if problems:
            result["notes"].append(f"cleanup could not remove: {problems}")
            result["error"] = result["error"] or "cleanup failed"
        result["elapsed_s"] = round(time.monotonic() - started, 1)
        if result["error"]:
            progress.fail(result["error"])
        else:
            progress.done(_summary(result["metrics"]))
    return result


def machine_info() -> dict:
    info = {"kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "loadavg_start": os.getloadavg()}
    for cmd in (["ovs-vswitchd", "--version"], ["iperf3", "--version"], ["trafgen", "--version"]):
        if shutil.which(cmd[0]):
            out = run(cmd, check=False).stdout.strip().splitlines()
            info[cmd[0]] = out[0] if out else ""
    return info


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cases = select(args.only)
    except CommandError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for c in cases:
            print(f"{c.name:<20} {c.group}")
        return 0
    why = preflight()
    if why:
        print(f"bench: {why}", file=sys.stderr)
        return 2
    settings = Settings(args.quick)
    tag = Resources().tag
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    doc = {"run_id": tag, "quick": args.quick, "started": stamp, "argv": sys.argv[1:],
           "machine": machine_info(), "results": [], "interrupted": False}
    # SIGINT too: a shell starting us in the background without job control
    # sets it to "ignore", and then Ctrl-C or `kill -INT` would do nothing.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _raise_interrupt)
    progress = Progress(len(cases))
    progress.message(f"bench {tag}: {len(cases)} case(s), {'quick' if args.quick else 'full'} mode")
    t0 = time.monotonic()
    try:
        for case in cases:
            doc["results"].append(run_case(case, tag, settings, progress))
    except KeyboardInterrupt:
        doc["interrupted"] = True
        progress.message("interrupted: cleaned up the running case")
    finally:
        with signals_ignored():
            left = leftovers(tag)
            if left:  # the per-case sweep missed something: one more pass
                Resources(tag).close()
                left = leftovers(tag)
    doc["elapsed_s"] = round(time.monotonic() - t0, 1)
    doc["machine"]["loadavg_end"] = os.getloadavg()
    doc["leftovers"] = left
    return _output(doc, args)


def _output(doc: dict, args) -> int:
    stem = RESULTS_DIR / f"bench-{doc['started']}-{doc['run_id']}"
    json_path, png_path = f"{stem}.json", f"{stem}.png"
    report.write_json(doc, json_path)
    if args.json:
        report.write_json(doc, args.json)
    png_error = None
    try:
        report.write_png(doc, png_path)
    except Exception as exc:  # a chart problem must not lose the figures
        png_error = f"{type(exc).__name__}: {exc}"
    sys.stdout.write(report.render(doc))
    if doc["leftovers"]:
        print(f"\nLEFT BEHIND: {doc['leftovers']}")
    print(f"\nresults: {json_path}" + (f" (and {args.json})" if args.json else ""))
    print(f"chart:   {png_path}" if png_error is None else f"chart failed: {png_error}")
    if doc["interrupted"]:
        return 130
    failed = any(r.get("error") for r in doc["results"]) or doc["leftovers"] or png_error
    return 1 if failed else 0
