"""Issue #5's targets, checked against one run's results.

Each target is a ratio between two figures of the same run (a case name and
a metric key each), compared with a bound. A target whose cases were not
run prints as n/a. "No growth" of the per-frame cost allows 10%: the same
case repeated moves by about that much on this machine. The reference line
under patch vs veth is OVS's own patch and veth pairs, measured the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

MB_PER_MIB = 1.048576


@dataclass(frozen=True)
class Target:
    text: str
    num: tuple[str, str]  # (case, metric key)
    den: tuple[str, str]
    bound: float
    at_least: bool  # True: ratio >= bound; False: ratio <= bound
    #: the same ratio for OVS, printed under it (not judged)
    reference: tuple[tuple[str, str], tuple[str, str]] | None = None


def _p50s(text: str, num: str, den: str, bound: float) -> list[Target]:
    return [Target(f"{text}, {where}", (num, key), (den, key), bound, False)
            for where, key in (("unpinned", "lat_p50_us"), ("same CPU", "lat_same_p50_us"),
                               ("cross CPU", "lat_cross_p50_us"))]


TARGETS = [
    Target("TCP 1 stream >= 1.2x OVS", ("ovslite", "tcp1_gbps"), ("ovs", "tcp1_gbps"), 1.2, True),
    Target("TCP 1 stream >= 0.85x Linux bridge", ("ovslite", "tcp1_gbps"), ("linux", "tcp1_gbps"),
           0.85, True),
    Target("64 B rate >= 1.5x OVS", ("ovslite", "rate_fps"), ("ovs", "rate_fps"), 1.5, True),
    *_p50s("RTT p50 <= OVS", "ovslite", "ovs", 1.0),
    Target("patch >= 2x veth, 64 B rate", ("ovslite-patch", "rate_fps"), ("ovslite-veth", "rate_fps"),
           2.0, True, (("ovs-patch", "rate_fps"), ("ovs-veth", "rate_fps"))),
    *_p50s("8 patched bridges <= 1.5x one bridge, RTT p50", "chain-patch-8", "chain-1", 1.5),
    Target("CPU per frame, 100k MACs <= 1.1x 1 MAC", ("fdb-100000", "cpu_s_per_mframe"),
           ("fdb-1", "cpu_s_per_mframe"), 1.1, False),
]


def _value(by_name: dict, ref: tuple[str, str]):
    case, key = ref
    r = by_name.get(case)
    if r is None or r.get("error"):
        return None
    return r["metrics"].get(key)


def lines(results: list[dict]) -> list[str]:
    """The targets section of the report (empty if none of its cases ran)."""
    by_name = {r["name"]: r for r in results}
    rows = []
    for t in TARGETS:
        num, den = _value(by_name, t.num), _value(by_name, t.den)
        if num is None or not den:
            continue
        r = num / den
        met = r >= t.bound if t.at_least else r <= t.bound
        rows.append(f"  {t.text:<58} {r:6.2f}x  {'met' if met else 'NOT met'}")
        if t.reference is not None:
            a, b = _value(by_name, t.reference[0]), _value(by_name, t.reference[1])
            if a is not None and b:
                rows.append(f"  {'  the same for OVS (reference)':<58} {a / b:6.2f}x")
    rss = _value(by_name, ("ports-64-fdb-100000", "rss_peak_mib"))
    if rss is not None:
        mb = rss * MB_PER_MIB
        rows.append(f"  {'RSS < 80 MB, 64 ports + 100k MACs':<58} {mb:5.1f} MB  {'met' if mb < 80 else 'NOT met'}")
    if not rows:
        return []
    return ["Issue #5 targets, from this run (ratio of the two figures above):", *rows, ""]
