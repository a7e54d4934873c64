"""latency-pairs: the RTT of four topologies, measured interleaved rather than one after another.

Why: on this VM the RTT through a userspace switch drifts over minutes (the
same topology twice, a minute apart: p50 53 us then 212 us), so a ratio
between two cases measured minutes apart is mostly the drift. Here the Linux
bridge, OVS, ovslite and a chain of 8 ovslite bridges joined by patch ports
are all up at once (an idle daemon costs nothing) and the pings alternate
between them: each round is one block of pings per topology, the starting
topology rotated each round so none always goes first (a phase's first
block can run slow: 111 us vs ~55 after it, by hand). Each topology's blocks are pooled per
placement, so all four see the same minutes of the machine and their ratios
hold still (~1.2x for 8 bridges vs 1 by hand, where separate runs gave
1.2x-1.85x).

Placements as in the core cases: unpinned, then ping on the first CPU and
every thread of every switch process on it ("same") or on the second
("cross"), held for the whole phase. The Linux bridge has no process: only
its ping is pinned. Each topology has its own namespaces and names (a role
prefix), so all four reuse h1/h2's addresses; OVS runs one private
ovs-vswitchd, each ovslite topology its own ovslited.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from . import measure
from .topo import Topo, build

if TYPE_CHECKING:
    from .cases import Settings, Step
    from .resources import Resources

NAME = "latency-pairs"
GROUP = "latency"
#: metric key stem: (column label, role prefix for its names, build() arguments)
TOPOS: dict[str, tuple[str, str, dict]] = {
    "linux": ("Linux bridge", "lb", {"kind": "linux"}),
    "ovs": ("OVS", "ov", {"kind": "ovs"}),
    "ovslite": ("ovslite", "ol", {"kind": "ovslite"}),
    "chain8": ("8 patched", "c8", {"kind": "ovslite", "chain": 8, "link": "patch"}),
}
#: placement: its label ("" is unpinned)
PLACEMENTS = {"": "unpinned", "same": "same CPU", "cross": "cross CPU"}
PCTS = ("p50", "p99")


def _lat(placement: str) -> str:
    return f"lat_{placement}" if placement else "lat"


def lat_key(placement: str, pct: str) -> str:
    """The key a single case's latency() stores the same figure under (lat_same_p50_us)."""
    return f"{_lat(placement)}_{pct}_us"


def stem(topo: str, placement: str) -> str:
    """The prefix measure.summary() takes: <topo>_lat[_<placement>]."""
    return f"{topo}_{_lat(placement)}"


def key(topo: str, placement: str, pct: str) -> str:
    return f"{topo}_{lat_key(placement, pct)}"


KEYS = tuple(key(t, p, pct) for t in TOPOS for p in PLACEMENTS for pct in PCTS)
CROSS_KEYS = tuple(key(t, "cross", pct) for t in TOPOS for pct in PCTS)


def metrics() -> dict[str, tuple[str, str, float, str]]:
    """report.METRICS entries for every key."""
    return {key(t, p, pct): (f"{TOPOS[t][0]} RTT {pct}, {where}", "us", 1, ".0f")
            for t in TOPOS for p, where in PLACEMENTS.items() for pct in PCTS}


def progress_summary(m: dict) -> str:
    """The unpinned p50s, for the progress line ("" if not measured)."""
    values = [m.get(key(t, "", "p50")) for t in TOPOS]
    if None in values:
        return ""
    return "rtt p50 " + "/".join(f"{v:.0f}" for v in values) + f" us ({'/'.join(TOPOS)})"


def _build_all(res: Resources, step: Step) -> dict[str, Topo]:
    topos = {}
    for name, (label, prefix, kw) in TOPOS.items():
        step(f"building {label}")
        topos[name] = build(res, prefix=prefix, **kw)
    return topos


def _placements(cpus: list[int]) -> list[tuple[str, int | None, set[int] | None]]:
    """(placement, ping's CPU, the switches' CPUs); no "cross" without a second CPU."""
    out: list[tuple[str, int | None, set[int] | None]] = [("", None, None), ("same", cpus[0], {cpus[0]})]
    if len(cpus) > 1:
        out.append(("cross", cpus[0], {cpus[1]}))
    return out


def rotated(names: list[str], round_: int) -> list[str]:
    k = round_ % len(names)
    return names[k:] + names[:k]


def _interleaved(topos: dict[str, Topo], s: Settings, step: Step, where: str,
                 ping_cpu: int | None) -> dict[str, list[float]]:
    pooled: dict[str, list[float]] = {name: [] for name in topos}
    for r in range(s.pair_rounds):
        step(f"latency {where}, round {r + 1}/{s.pair_rounds}, {s.pair_pings} pings a topology")
        for name in rotated(list(topos), r):
            t = topos[name]
            pooled[name] += measure.rtts(t.h1, t.h2, s.pair_pings, cpu=ping_cpu)
    return pooled


def measure_pairs(res: Resources, s: Settings, step: Step) -> tuple[dict, list[str]]:
    topos = _build_all(res, step)
    pids = [pid for t in topos.values() for pid in t.pids()]
    m: dict = dict.fromkeys(CROSS_KEYS)  # n/a unless a second CPU is there to measure them
    m.update(rounds=s.pair_rounds, pings_per_block=s.pair_pings)
    sent = s.pair_rounds * s.pair_pings
    for placement, ping_cpu, switch_cpus in _placements(measure.usable_cpus()):
        placed = measure.pinned(pids, switch_cpus) if switch_cpus else contextlib.nullcontext()
        with placed:
            pooled = _interleaved(topos, s, step, PLACEMENTS[placement], ping_cpu)
        for name, values in pooled.items():
            m.update(measure.summary(values, sent, stem(name, placement)))
    notes = [f"{TOPOS[name][0]}: {n}" for name, t in topos.items() for n in t.notes]
    return m, notes
