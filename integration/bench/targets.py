"""Issue #5's and issue #13's (overlay) targets, checked against one run's results.

Each target is a ratio between two figures of the same run (a case name and
a metric key each), compared with a bound. A target whose cases were not
run is left out. The RTT targets prefer latency-pairs' figures, taken
interleaved (see latpairs.py: RTT drifts over minutes, so two cases run one
after another mostly compare the drift), and fall back to the two separate
cases; the line says which it used. "No growth" of the per-frame cost
allows 10%: the same case repeated moves by about that much on this
machine. The reference line under patch vs veth is OVS's own patch and veth
pairs, measured the same way. The overlay targets compare ovslite's vxlan
row with the kernel's vxlan and OVS's rows of the overlay section (overlay.py);
an OVS figure of 0 (no TCP through OVS) prints as n/a rather than as a ratio.
Reporting only: nothing here fails a run or a test.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import latpairs

MB_PER_MIB = 1.048576
WIDTH = 72
Ref = tuple[str, str]  # (case, metric key)


@dataclass(frozen=True)
class Target:
    text: str
    num: Ref
    den: Ref
    bound: float
    at_least: bool  # True: ratio >= bound; False: ratio <= bound
    #: the same ratio for OVS, printed under it (not judged)
    reference: tuple[Ref, Ref] | None = None
    #: the same ratio from latency-pairs, preferred to num/den when that case ran
    interleaved: tuple[Ref, Ref] | None = None


def _p50s(text: str, num: str, den: str, bound: float, pair: tuple[str, str]) -> list[Target]:
    """One target per placement: cases `num` / `den`, or latency-pairs' topologies `pair`."""
    out = []
    for p, where in latpairs.PLACEMENTS.items():
        key = latpairs.lat_key(p, "p50")
        a, b = ((latpairs.NAME, latpairs.key(topo, p, "p50")) for topo in pair)
        out.append(Target(f"{text}, {where}", (num, key), (den, key), bound, False, interleaved=(a, b)))
    return out


TARGETS = [
    Target("TCP 1 stream >= 1.2x OVS", ("ovslite", "tcp1_gbps"), ("ovs", "tcp1_gbps"), 1.2, True),
    Target("TCP 1 stream >= 0.85x Linux bridge", ("ovslite", "tcp1_gbps"), ("linux", "tcp1_gbps"),
           0.85, True),
    Target("64 B rate >= 1.5x OVS", ("ovslite", "rate_fps"), ("ovs", "rate_fps"), 1.5, True),
    *_p50s("RTT p50 <= OVS", "ovslite", "ovs", 1.0, ("ovslite", "ovs")),
    Target("patch >= 2x veth, 64 B rate", ("ovslite-patch", "rate_fps"), ("ovslite-veth", "rate_fps"),
           2.0, True, (("ovs-patch", "rate_fps"), ("ovs-veth", "rate_fps"))),
    *_p50s("8 patched bridges <= 1.5x one bridge, RTT p50", "chain-patch-8", "chain-1", 1.5,
           ("chain8", "ovslite")),
    Target("CPU per frame, 100k MACs <= 1.1x 1 MAC", ("fdb-100000", "cpu_s_per_mframe"),
           ("fdb-1", "cpu_s_per_mframe"), 1.1, False),
]


#: issue #13: TCP against OVS with the containers' tx offloads off (OVS 3.1 carries no TCP
#: over a tunnel with them on); 64-byte frames against OVS as it comes (offloads on)
OVERLAY_TARGETS = [
    Target("TCP 1 stream over vxlan >= 0.5x the kernel's vxlan",
           ("overlay-vxlan", "tcp1_gbps"), ("overlay-kernel", "tcp1_gbps"), 0.5, True),
    Target("TCP 1 stream over vxlan >= 4x OVS userspace, containers tx off",
           ("overlay-vxlan", "tcp1_gbps"), ("overlay-ovs-txoff", "tcp1_gbps"), 4.0, True),
    Target("64 B frames over vxlan >= 1.3x OVS userspace",
           ("overlay-vxlan", "rate_fps"), ("overlay-ovs", "rate_fps"), 1.3, True),
]


def _value(by_name: dict, ref: tuple[str, str]):
    case, key = ref
    r = by_name.get(case)
    if r is None or r.get("error"):
        return None
    return r["metrics"].get(key)


def _ratio(by_name: dict, refs: tuple[Ref, Ref]) -> float | None:
    num, den = _value(by_name, refs[0]), _value(by_name, refs[1])
    return None if num is None or not den else num / den


def _measured(by_name: dict, t: Target) -> tuple[float | None, str]:
    """The target's ratio and where it came from: interleaved if latency-pairs has it."""
    if t.interleaved is not None:
        r = _ratio(by_name, t.interleaved)
        if r is not None:
            return r, f"{t.text} (interleaved)"
        return _ratio(by_name, (t.num, t.den)), f"{t.text} (separate cases)"
    return _ratio(by_name, (t.num, t.den)), t.text


def _zero_reference(by_name: dict, t: Target) -> bool:
    """Both figures measured, the reference's 0: no ratio, but the target is not silent."""
    return _value(by_name, t.num) is not None and _value(by_name, t.den) == 0


def _rows(by_name: dict, targets: list[Target]) -> list[str]:
    rows = []
    for t in targets:
        r, text = _measured(by_name, t)
        if r is None:
            if _zero_reference(by_name, t):
                rows.append(f"  {text:<{WIDTH}}    n/a  (the reference is 0)")
            continue
        met = r >= t.bound if t.at_least else r <= t.bound
        rows.append(f"  {text:<{WIDTH}} {r:6.2f}x  {'met' if met else 'NOT met'}")
        ref = _ratio(by_name, t.reference) if t.reference is not None else None
        if ref is not None:
            rows.append(f"  {'  the same for OVS (reference)':<{WIDTH}} {ref:6.2f}x")
    return rows


def lines(results: list[dict]) -> list[str]:
    """The targets sections of the report (each left out if none of its cases ran)."""
    by_name = {r["name"]: r for r in results}
    rows = _rows(by_name, TARGETS)
    rss = _value(by_name, ("ports-64-fdb-100000", "rss_peak_mib"))
    if rss is not None:
        mb = rss * MB_PER_MIB
        rows.append(f"  {'RSS < 80 MB, 64 ports + 100k MACs':<{WIDTH}} {mb:5.1f} MB  {'met' if mb < 80 else 'NOT met'}")
    out = ["Issue #5 targets, from this run (ratio of the two figures above):", *rows, ""] if rows else []
    overlay = _rows(by_name, OVERLAY_TARGETS)
    if overlay:
        out += ["Issue #13 targets (overlay), from this run:", *overlay, ""]
    return out
