"""The bench harness end to end: `python -m integration.bench --quick` on a small set of cases,
and on the overlay section (two hosts, a tunnel between their switches).

Checks that every expected figure comes out present and positive (n/a only
where a switch has no process: the Linux bridge's CPU and RSS; and the
cross-CPU RTT on a one-CPU machine), that the JSON and PNG are written, and
that nothing the run made (namespaces, links, processes, temporary
directories) is left behind. No figure is
compared with another: on a shared 2-core machine they are too noisy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .bench import latpairs, overlay
from .bench.cases import select
from .bench.resources import leftovers
from .bench.targets import OVERLAY_TARGETS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
# Linux bridge and OVS (the references the ratios need), an OVS patch pair, ovslite, a
# two-bridge patch chain, issue #5's target row (64 ports and 100k MACs,
# about 20 s in quick mode) and the interleaved latency of four topologies up
# at once: every builder and report section.
ONLY = "linux,ovs,ovs-patch,ovslite,chain-patch-2,ports-64-fdb-100000,latency-pairs"


@contextlib.contextmanager
def quick_bench(only: str, tmp_path: Path):
    """`--quick --only ONLY`: yields (the finished process, its results JSON, the files it
    wrote under results/), and removes those files afterwards (results/ is for people's
    runs, not the tests')."""
    if os.geteuid() != 0:
        pytest.skip("the bench needs root (network namespaces, veth, AF_PACKET)")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "integration.bench", "--quick", "--only", only, "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    made = re.findall(r"^(?:results|chart):\s+(\S+)", proc.stdout, re.M)
    try:
        assert proc.returncode == 0, f"bench failed:\n{proc.stdout}\n{proc.stderr}"
        yield proc, json.loads(out.read_text()), made
    finally:
        for path in made:
            if os.path.exists(path):
                os.unlink(path)


def _figures_ok(case, metrics: dict) -> None:
    """Every expected figure positive; n/a exactly where the case allows it."""
    for key in case.expected:
        value = metrics.get(key)
        if key in case.na:
            assert value is None, f"{case.name}: {key} should be n/a, got {value!r}"
            continue
        assert isinstance(value, int | float) and value > 0, f"{case.name}: {key}={value!r}"


def test_quick_bench_reports_every_figure_and_cleans_up(tmp_path):
    with quick_bench(ONLY, tmp_path) as (proc, doc, made):
        results = {r["name"]: r for r in doc["results"]}
        cases = select(ONLY)
        assert set(results) == {c.name for c in cases}
        for case in cases:
            r = results[case.name]
            assert r["error"] is None, f"{case.name}: {r['error']}"
            _figures_ok(case, r["metrics"])
        # RTT with ping and the switch pinned to one CPU and to two, next to the unpinned one.
        pinned = ("lat_same_p50_us", "lat_same_p99_us", "lat_cross_p50_us", "lat_cross_p99_us")
        assert all(k in results["ovslite"]["metrics"] for k in pinned), results["ovslite"]["metrics"]
        assert "RTT p50, same CPU" in proc.stdout and "RTT p50, cross CPU" in proc.stdout
        assert len(made) == 2 and all(os.path.getsize(p) > 0 for p in made), proc.stdout
        # The table shows each figure with its ratios to both references.
        assert "/ linux" in proc.stdout and "/ ovs" in proc.stdout
        # latency-pairs: every topology and placement (the generic check above covers
        # them, n/a cross-CPU only on one CPU), its own table, and the targets use it.
        assert set(latpairs.KEYS) <= set(results[latpairs.NAME]["metrics"])
        assert "ovslite/ovs" in proc.stdout and "8 patched/ovslite" in proc.stdout
        assert "RTT p50 <= OVS, unpinned (interleaved)" in proc.stdout
        assert doc["leftovers"] == []
        assert leftovers(doc["run_id"]) == []


def test_quick_overlay_section_reports_every_row_and_cleans_up(tmp_path):
    """`--only overlay`: the kernel's vxlan, OVS userspace (4 settings) and ovslite's vxlan,
    geneve and gre, each on two namespaced hosts; every row's figures, the ratios to the
    kernel and to OVS, the issue #13 target lines, and nothing left behind."""
    with quick_bench("overlay", tmp_path) as (proc, doc, _):
        results = {r["name"]: r for r in doc["results"]}
        cases = select("overlay")
        assert {c.name for c in cases} == {s.name for s in overlay.SETUPS}
        assert set(results) == {c.name for c in cases}
        for case in cases:
            r = results[case.name]
            assert r["error"] is None, f"{case.name}: {r['error']}"
            _figures_ok(case, r["metrics"])
            # OVS with offloads on may carry no TCP, but the figure is there (0 if so)
            assert r["metrics"]["tcp1_gbps"] >= 0 and r["metrics"]["tcp4_gbps"] >= 0
        for setup in overlay.SETUPS:
            assert setup.label in proc.stdout
        assert "/ kernel" in proc.stdout and "/ OVS tx off" in proc.stdout
        assert "Issue #13 targets (overlay)" in proc.stdout
        for target in OVERLAY_TARGETS:
            assert target.text in proc.stdout
        assert doc["leftovers"] == []
        assert leftovers(doc["run_id"]) == []


def test_only_selects_the_target_row_by_name_group_and_alias():
    for only in ("ports-64-fdb-100000", "scale-target", "scaling"):
        names = {c.name for c in select(only)}
        assert "ports-64-fdb-100000" in names, only
