"""The cases: what each row of the report builds and measures.

Design: a `Case` is a name, a group, a column label and a function that is
given a fresh `Resources` (everything it makes is removed right after it,
whatever happens), the run's `Settings` and a `step` callback for the
progress line. It returns (metrics, notes). The runner calls cases one after
another, never two at once: on two cores, overlapping cases would measure
each other.

Core cases (every switch, same two hosts): latency first, on an idle switch,
then TCP with 1 and 4 streams, then the 64-byte flood, then peak RSS (the
high-water mark after the heaviest load). Scaling cases vary one thing on
ovslite: MACs in the fdb, ports on the bridge, bridges in a chain; the
target case puts issue #5's 64 ports and 100k MACs on one bridge at once.

Latency (core and chain cases) is taken three ways: unpinned, then with
ping and every switch thread on one CPU ("same"), then on two ("cross").
Through a userspace switch the RTT is mostly the wake-ups between ping and
the switch, far dearer across CPUs on a VM, so unpinned it follows wherever
the scheduler put them (30% and more between runs) and only the pinned rows
give ratios that repeat. The switch gets its own affinity back before TCP.

The overlay section (group "overlay", overlay.py) puts two hosts, each with
its own switch, on either side of a tunnel: the kernel's vxlan, Open vSwitch
userspace and ovslite's vxlan, geneve and gre, container to container.

Last, latency-pairs (group "latency", latpairs.py) takes the latency ratios
again, interleaved: the RTT through a userspace switch drifts a lot
over minutes on this VM (p50 53 us, then 212 us a minute later), so a ratio
between two cases run minutes apart mostly measures the drift. It keeps
Linux, OVS, ovslite and an 8-bridge ovslite chain up at once and alternates
blocks of pings between them, so all four share the same minutes; the
targets take their RTT ratios from it when it ran.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import agingcost, latpairs, measure, overlay
from .resources import CommandError, Resources, run
from .topo import build

REPO = Path(__file__).resolve().parents[2]
FILL_RATE = 50_000  # frames/s: well under what ovslite drains, so no MAC is lost
CORE = ("linux", "ovs", "ovslite", "ovslite-patch", "ovslite-veth", "ovs-patch", "ovs-veth")
FDB_SIZES = (1, 1_000, 100_000)
PORT_COUNTS = (2, 16, 64)
CHAIN_LENGTHS = (1, 2, 4, 8)
TARGET = (64, 100_000)  # issue #5: RSS under 80 MB with 64 ports and 100,000 MACs
FDB_SHOW = 100_000  # issue #12: `ovslite-ctl fdb-show` of 100,000 entries, end to end
FDB_SHOW_RUNS = 3

RATE_KEYS = ("rate_fps", "offered_fps", "cpu_s_per_mframe", "cpu_util", "rss_peak_mib")
CROSS_KEYS = ("lat_cross_p50_us", "lat_cross_p99_us")
LAT_KEYS = ("lat_p50_us", "lat_p99_us", "lat_same_p50_us", "lat_same_p99_us", *CROSS_KEYS)
CORE_KEYS = ("tcp1_gbps", "tcp4_gbps", *LAT_KEYS, *RATE_KEYS)


@dataclass
class Settings:
    quick: bool

    @property
    def tcp_seconds(self) -> float:
        return 1 if self.quick else 10

    @property
    def rate_seconds(self) -> float:
        return 1 if self.quick else 10

    @property
    def warmup(self) -> float:
        return 0.3 if self.quick else 1.0

    @property
    def pings(self) -> int:
        return 200 if self.quick else 1000  # at 5 ms: 1 s or 5 s

    @property
    def pair_rounds(self) -> int:
        return 2 if self.quick else 5

    @property
    def pair_pings(self) -> int:
        return 50 if self.quick else 200  # a block per topology and round


Step = Callable[[str], None]


@dataclass
class Case:
    name: str
    group: str
    label: str
    fn: Callable[[Resources, Settings, Step], tuple[dict, list[str]]]
    #: figures that must come out positive (None allowed only where listed in `na`)
    expected: tuple[str, ...] = ()
    na: tuple[str, ...] = ()
    params: dict = field(default_factory=dict)


def _rate(topo, s: Settings, step: Step, m: dict) -> None:
    step(f"64-byte frames, {s.rate_seconds:g} s")
    time.sleep(0.2)  # let queues from the previous test drain
    m.update(measure.forwarding_rate(topo.h1, topo.h2, topo.pids(), s.rate_seconds,
                                     topo.workdir, s.warmup))
    m.setdefault("cpu_s_per_mframe", None)
    m.setdefault("cpu_util", None)


def _placed_latency(topo, s: Settings, step: Step, m: dict, name: str, ping_cpu: int,
                    switch_cpu: int) -> None:
    step(f"latency, {name} CPU, {s.pings} pings")
    with measure.pinned(topo.pids(), {switch_cpu}):
        m.update(measure.latency(topo.h1, topo.h2, s.pings, cpu=ping_cpu, prefix=f"lat_{name}"))


def _latency(topo, s: Settings, step: Step, m: dict) -> None:
    step(f"latency, {s.pings} pings")
    m.update(measure.latency(topo.h1, topo.h2, s.pings))
    cpus = measure.usable_cpus()
    _placed_latency(topo, s, step, m, "same", cpus[0], cpus[0])
    if len(cpus) < 2:
        m.update(dict.fromkeys((*CROSS_KEYS, "lat_cross_loss")))  # no second CPU to place on
    elif not topo.pids():
        # The Linux bridge has no process to place, so "cross" would repeat the
        # same-CPU measurement: it is taken once and stored under both names.
        m.update({k.replace("_same_", "_cross_"): v for k, v in m.items() if "_same_" in k})
    else:
        _placed_latency(topo, s, step, m, "cross", cpus[0], cpus[1])


def _single_cpu_na(cross_keys: tuple[str, ...] = CROSS_KEYS) -> tuple[str, ...]:
    return cross_keys if len(measure.usable_cpus()) < 2 else ()


def _finish(topo, m: dict) -> list[str]:
    m["rss_peak_mib"] = measure.peak_rss_mib(topo.pids())
    notes = list(topo.notes)
    drops = getattr(topo.switch, "drops", None)
    if drops is not None:
        counted = drops()
        if counted:
            notes.append("ovslite drops: " + ", ".join(f"{k}={v}" for k, v in sorted(counted.items())))
    return notes


def core_case(name: str) -> Case:
    kind, _, link = name.partition("-")
    chain = 2 if link else 1

    def fn(res: Resources, s: Settings, step: Step):
        step("building topology")
        topo = build(res, kind, chain=chain, link=link or "patch")
        m: dict = {}
        _latency(topo, s, step, m)
        step(f"TCP 1 stream, {s.tcp_seconds:g} s")
        m["tcp1_gbps"] = measure.tcp_throughput(topo.h1, topo.h2, s.tcp_seconds, 1)
        step(f"TCP 4 streams, {s.tcp_seconds:g} s")
        m["tcp4_gbps"] = measure.tcp_throughput(topo.h1, topo.h2, s.tcp_seconds, 4)
        _rate(topo, s, step, m)
        return m, _finish(topo, m)

    na = ("cpu_s_per_mframe", "cpu_util", "rss_peak_mib") if kind == "linux" else ()
    na += _single_cpu_na()
    return Case(name, "core", name, fn, CORE_KEYS, na, {"switch": kind, "bridges": chain, "link": link})


# -- scaling ------------------------------------------------------------------
def _fill(topo, count: int, step: Step) -> None:
    """Source `count` distinct MACs from h3 (paced, so none is lost to a full socket buffer)."""
    h3 = topo.h3
    step(f"filling fdb with {count:,} MACs")
    run(h3.cmd(sys.executable, "-m", "integration.bench.fill", h3.ifname, str(count), str(FILL_RATE)),
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=count / FILL_RATE + 30)
    time.sleep(0.3)  # let the daemon drain its socket


def _count_fdb(topo, count: int, step: Step, m: dict, notes: list[str]) -> None:
    """Read the fdb back and note how much of the fill it holds (and anything unexpected)."""
    # Counted once, after the rate window: a dump of 100k entries takes a
    # while and must not overlap the measurement; entries age only after
    # 300 s, so what is there now was there during the window.
    step("counting fdb entries")
    t0 = time.monotonic()
    entries = topo.switch.fdb(topo.bridges[0])
    if entries is None:
        notes.append("fdb could not be read over the control socket: fill unverified")
        return
    size = len(entries)
    m["fdb_entries"] = size
    if size > 10_000:
        notes.append(f"fdb-show of {size:,} entries took {time.monotonic() - t0:.1f} s")
    hosts = {h.mac for h in (topo.h1, topo.h2, topo.h3)}
    filled = sum(e["mac"].startswith("02:b0:") for e in entries)
    other = [f"{e['mac']} on {e['port']}" for e in entries
             if not e["mac"].startswith("02:b0:") and e["mac"] not in hosts]
    if filled < count:
        notes.append(f"fdb holds {filled} of the {count} MACs sent")
    if other:
        notes.append(f"fdb also learned {len(other)} unexpected MAC(s): {', '.join(other[:5])}")


def _macs_label(count: int) -> str:
    return f"{count:,}".replace(",000,000", "M").replace(",000", "k")


def _filled_rate(topo, macs: int, s: Settings, step: Step) -> tuple[dict, list[str]]:
    """Fill the fdb with `macs` MACs, then the 64-byte rate, RSS and the fdb's final count."""
    _fill(topo, macs, step)
    m: dict = {}
    _rate(topo, s, step, m)
    notes = _finish(topo, m)
    _count_fdb(topo, macs, step, m, notes)
    return m, notes


def fdb_case(count: int) -> Case:
    def fn(res: Resources, s: Settings, step: Step):
        step("building topology")
        return _filled_rate(build(res, "ovslite", filler=True), count, s, step)

    return Case(f"fdb-{count}", "scale-fdb", f"fdb {_macs_label(count)}", fn, (*RATE_KEYS, "fdb_entries"),
                params={"switch": "ovslite", "macs": count})


def ports_case(count: int) -> Case:
    def fn(res: Resources, s: Settings, step: Step):
        step(f"building topology ({count} ports)")
        topo = build(res, "ovslite", extra_ports=count - 2)
        m: dict = {}
        _rate(topo, s, step, m)
        return m, _finish(topo, m)

    return Case(f"ports-{count}", "scale-ports", f"{count} ports", fn, RATE_KEYS,
                params={"switch": "ovslite", "ports": count})


def chain_case(length: int, link: str) -> Case:
    def fn(res: Resources, s: Settings, step: Step):
        step(f"building {length} bridge(s), joined by {link}")
        topo = build(res, "ovslite", chain=length, link=link)
        m: dict = {}
        _latency(topo, s, step, m)
        return m, _finish(topo, m)

    name = "chain-1" if length == 1 else f"chain-{link}-{length}"
    label = "1 bridge" if length == 1 else f"{length} {link}"
    params = {"switch": "ovslite", "bridges": length, "link": link if length > 1 else ""}
    return Case(name, "scale-chain", label, fn, (*LAT_KEYS, "rss_peak_mib"), _single_cpu_na(), params)


def target_case(ports: int, macs: int) -> Case:
    """Issue #5's memory target on one bridge: `ports` ports (h1, h2, the filler h3 and idle
    ones) and `macs` MACs learned, so peak RSS counts both at once."""

    def fn(res: Resources, s: Settings, step: Step):
        step(f"building topology ({ports} ports)")
        return _filled_rate(build(res, "ovslite", extra_ports=ports - 3, filler=True), macs, s, step)

    return Case(f"ports-{ports}-fdb-{macs}", "scale-target", f"{ports} ports + {_macs_label(macs)}",
                fn, (*RATE_KEYS, "fdb_entries"), params={"switch": "ovslite", "ports": ports, "macs": macs})


def aging_case() -> Case:
    """One MAC table aging pass over 100,000 entries (agingcost.py): in this process."""

    def fn(res: Resources, s: Settings, step: Step):
        step(f"timing expire() over {agingcost.ENTRIES:,} entries")
        return agingcost.measure(s.quick), []

    return Case("fdb-aging-100000", "scale-aging", "100k MACs", fn, agingcost.KEYS,
                params={"switch": "ovslite", "macs": agingcost.ENTRIES})


def _time_ctl(topo, args: list[str], runs: int) -> float:
    """Median wall time of `ovslite-ctl --socket S ARGS >/dev/null`: start-up, request,
    the daemon's encoding, the socket, decoding and printing."""
    ctl = Path(sys.executable).parent / "ovslite-ctl"
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        proc = subprocess.run([str(ctl), "--socket", topo.switch.socket, *args], timeout=120,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        times.append(time.monotonic() - t0)
        if proc.returncode != 0:
            raise CommandError(f"ovslite-ctl {' '.join(args)}: {proc.stderr.strip()[:300]}")
    return sorted(times)[len(times) // 2]


def fdb_show_case(count: int) -> Case:
    """The MAC table's tools at scale: fdb-show of `count` learned MACs, text and JSON."""

    def fn(res: Resources, s: Settings, step: Step):
        step("building topology")
        topo = build(res, "ovslite", filler=True)
        _fill(topo, count, step)
        m: dict = {}
        notes: list[str] = []
        _count_fdb(topo, count, step, m, notes)
        br = topo.bridges[0]
        step(f"fdb-show of {count:,} entries, {FDB_SHOW_RUNS} runs")
        m["fdb_show_s"] = _time_ctl(topo, ["fdb-show", br], FDB_SHOW_RUNS)
        step(f"fdb-show --format json of {count:,} entries")
        m["fdb_show_json_s"] = _time_ctl(topo, ["--format", "json", "fdb-show", br], 1)
        m["rss_peak_mib"] = measure.peak_rss_mib(topo.pids())
        return m, notes

    return Case(f"fdb-show-{count}", "scale-tools", f"fdb-show {_macs_label(count)}", fn,
                ("fdb_show_s", "fdb_show_json_s", "fdb_entries"),
                params={"switch": "ovslite", "macs": count})


def pairs_case() -> Case:
    return Case(latpairs.NAME, latpairs.GROUP, "interleaved", latpairs.measure_pairs, latpairs.KEYS,
                _single_cpu_na(latpairs.CROSS_KEYS), {"topologies": list(latpairs.TOPOS)})


def overlay_case(setup: overlay.Setup) -> Case:
    def fn(res: Resources, s: Settings, step: Step):
        return overlay.measure_setup(res, setup, s, step)

    return Case(setup.name, overlay.GROUP, setup.label, fn, setup.expected(), setup.na(),
                {"switch": setup.switch, "tunnel": setup.tunnel, "ovs_tso": setup.ovs_tso,
                 "tx_off": setup.tx_off})


def all_cases() -> list[Case]:
    cases = [core_case(n) for n in CORE]
    cases += [fdb_case(n) for n in FDB_SIZES]
    cases += [ports_case(n) for n in PORT_COUNTS]
    cases.append(chain_case(1, "patch"))
    cases += [chain_case(n, link) for link in ("patch", "veth") for n in CHAIN_LENGTHS if n > 1]
    cases.append(target_case(*TARGET))
    cases.append(aging_case())
    cases.append(fdb_show_case(FDB_SHOW))
    cases += [overlay_case(setup) for setup in overlay.SETUPS]
    cases.append(pairs_case())
    return cases


GROUP_ALIASES = {
    "core": CORE,
    "scaling": ("scale-fdb", "scale-ports", "scale-chain", "scale-target", "scale-aging",
                "scale-tools"),
}


def select(only: str | None) -> list[Case]:
    """Cases named by --only: case names, group names (scale-fdb...) or aliases (core, scaling)."""
    cases = all_cases()
    if not only:
        return cases
    wanted: set[str] = set()
    for word in (w.strip() for w in only.split(",")):
        if not word:
            continue
        wanted.update(GROUP_ALIASES.get(word, (word,)))
    known = {c.name for c in cases} | {c.group for c in cases}
    unknown = wanted - known
    if unknown:
        raise CommandError(f"--only: unknown case(s) {', '.join(sorted(unknown))}; "
                           f"known: {', '.join(sorted(known | set(GROUP_ALIASES)))}")
    return [c for c in cases if c.name in wanted or c.group in wanted]
