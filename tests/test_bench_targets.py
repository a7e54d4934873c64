"""The bench's issue #5 target lines: the right ratio, bound and verdict, n/a left out."""

from __future__ import annotations

from integration.bench.targets import lines


def result(name: str, **metrics) -> dict:
    return {"name": name, "metrics": metrics, "error": None}


def test_ratios_and_verdicts():
    out = "\n".join(lines([
        result("ovs", tcp1_gbps=10.0, rate_fps=200e3, lat_p50_us=100),
        result("linux", tcp1_gbps=20.0),
        result("ovslite", tcp1_gbps=13.0, rate_fps=290e3, lat_p50_us=90),
        result("ovslite-patch", rate_fps=300e3), result("ovslite-veth", rate_fps=160e3),
        result("ovs-patch", rate_fps=180e3), result("ovs-veth", rate_fps=120e3),
        result("ports-64-fdb-100000", rss_peak_mib=80.0),
    ]))
    assert "TCP 1 stream >= 1.2x OVS" in out and "1.30x  met" in out
    assert "0.65x  NOT met" in out  # 13 of Linux's 20
    assert "1.45x  NOT met" in out  # 290k of OVS's 200k
    assert "RTT p50 <= OVS, unpinned" in out and "0.90x  met" in out
    assert "same CPU" not in out  # not measured in this run: left out, not guessed
    assert "1.88x  NOT met" in out and "the same for OVS (reference)" in out and "1.50x" in out
    assert "83.9 MB  NOT met" in out  # 80 MiB is 83.9 MB


def test_nothing_to_judge_prints_nothing():
    assert lines([result("ovslite", tcp1_gbps=13.0)]) == []
    assert lines([{"name": "ovs", "metrics": {}, "error": "boom"}, result("ovslite", rate_fps=1.0)]) == []
