"""The bench report's overlay table: its own references (the kernel's vxlan, OVS), no
line of n/a ratios against an OVS that carried no TCP, and the core table unchanged."""

from __future__ import annotations

from integration.bench.report import render


def row(name: str, group: str, label: str, **metrics) -> dict:
    return {"name": name, "group": group, "label": label, "params": {}, "metrics": metrics,
            "notes": [], "error": None}


def doc(*results: dict) -> dict:
    return {"run_id": "t", "quick": True, "started": "now", "elapsed_s": 1.0, "results": list(results)}


def test_overlay_rows_are_judged_against_the_kernel_and_ovs():
    out = render(doc(
        row("overlay-kernel", "overlay", "kernel vxlan", tcp1_gbps=8.0, rate_fps=80e3),
        row("overlay-ovs", "overlay", "OVS", tcp1_gbps=0.0, rate_fps=50e3),
        row("overlay-ovs-txoff", "overlay", "OVS tx off", tcp1_gbps=0.8, rate_fps=40e3),
        row("overlay-vxlan", "overlay", "ovslite vxlan", tcp1_gbps=2.0, rate_fps=60e3),
    ))
    table = out.split("Overlay: container ->", 1)[1]
    tcp = table.split("TCP, 1 stream", 1)[1].split("64 B delivered", 1)[0]
    assert "/ kernel" in tcp and "0.25x" in tcp  # 2 / 8
    assert "/ OVS tx off" in tcp and "2.50x" in tcp  # 2 / 0.8
    assert "/ OVS " not in tcp.replace("/ OVS tx off", "")  # OVS moved no TCP: no ratio line
    rate = table.split("64 B delivered", 1)[1]
    assert "/ OVS " in rate and "1.20x" in rate  # 60k / 50k
    assert "TCP through OVS: none with OVS" in out and "OVS tx off 0.80" in out
    assert "/ linux" not in out  # the core's references are not used for the overlay


def test_core_rows_keep_their_references():
    out = render(doc(row("linux", "core", "linux", tcp1_gbps=10.0),
                     row("ovs", "core", "ovs", tcp1_gbps=5.0),
                     row("ovslite", "core", "ovslite", tcp1_gbps=6.0)))
    assert "/ linux" in out and "/ ovs" in out and "0.60x" in out and "1.20x" in out
    assert "Overlay" not in out
