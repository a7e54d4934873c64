"""`make demo` end to end: integration/demo.py --quick as a subprocess, read back through --json.

Checks every figure of the table is present and positive (in the JSON and in
the printed table), that the patch link forwarded more 64-byte frames per
second than the veth link (the one comparison the demo exists to show, and
a large margin: a veth crossing costs ovslited a kernel round trip per
frame), that the capture section shows tcpdump lines for the veth link and
ovslite-ctl capture lines for the patch port, that a chart was written, and
that nothing is left behind: no namespace or link with the run's prefix, no
ovslited, no working directory. Also: --keep leaves a working topology that
--teardown removes, and a missing tool stops the demo with one line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .demo_bench import demo_names_left
from .demo_report import FIGURES, ROWS
from .netns import why_unusable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "integration" / "demo.py"
#: the whole point of --quick: well under the full demo's 2 minutes
QUICK_BUDGET_S = 90


def run_demo(*args: str, timeout: float = 240, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEMO), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(f"{pid}: {cmd[:120]}")
    return found


def assert_nothing_left(doc: dict) -> None:
    assert demo_names_left(doc["tag"]) == []
    assert processes_mentioning(doc["dir"]) == []
    assert not os.path.exists(doc["dir"])


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One --quick run shared by the checks below: (completed process, JSON document)."""
    tmp = tmp_path_factory.mktemp("demo")
    out = tmp / "demo.json"
    proc = run_demo("--quick", "--json", str(out), "--results-dir", str(tmp / "results"))
    assert proc.returncode == 0, f"demo failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc, json.loads(out.read_text())


def test_every_figure_present_and_positive(quick):
    proc, doc = quick
    for link in ("patch", "veth"):
        for key in FIGURES:
            value = doc["links"][link].get(key)
            assert isinstance(value, int | float) and value > 0, f"{link}: {key}={value!r}"
    # The printed table: each row has two positive figures and a ratio.
    for key, (label, unit, *_rest) in ROWS.items():
        row = [line for line in proc.stdout.splitlines() if line.strip().startswith(f"{label}, {unit}")]
        assert len(row) == 1, f"table row {label!r} missing:\n{proc.stdout}"
        nums = re.findall(r"(\d+(?:\.\d+)?)x?", row[0][len(f"  {label}, {unit}"):])
        assert len(nums) >= 3, row[0]
        if key in FIGURES:
            assert float(nums[0]) > 0 and float(nums[1]) > 0, row[0]
    assert doc["elapsed_s"] < QUICK_BUDGET_S, f"--quick took {doc['elapsed_s']} s"


def test_patch_link_beats_veth_on_64_byte_frames(quick):
    _, doc = quick
    patch, veth = doc["links"]["patch"]["rate_fps"], doc["links"]["veth"]["rate_fps"]
    assert patch > veth, f"patch {patch:.0f} frames/s, veth {veth:.0f} frames/s"
    # The reading quotes the measured ratio rather than a canned one.
    assert f"{patch / veth:.1f}x" in " ".join(doc["reading"]) or patch / veth < 1.1


def test_capture_section(quick):
    proc, doc = quick
    names, cap = doc["names"], doc["capture"]
    # Patch: no kernel device, but ovslite-ctl capture shows the ping's frames.
    assert cap["patch"]["ip_link_rc"] != 0 and "does not exist" in cap["patch"]["ip_link_output"]
    assert cap["patch"]["ctl_lines"], "ovslite-ctl capture showed nothing on the patch port"
    assert all(names["patch_a"] in line and "ICMP echo" in line for line in cap["patch"]["ctl_lines"])
    assert f'Device "{names["patch_a"]}" does not exist.' in proc.stdout
    # Veth: tcpdump on the link's ends sees the frames (and so does ovslite-ctl capture).
    assert cap["veth"]["ip_link_rc"] == 0
    assert cap["veth"]["tcpdump_lines"], "tcpdump saw nothing on the veth link"
    assert all("ICMP echo" in line for line in cap["veth"]["tcpdump_lines"])
    assert cap["veth"]["ctl_lines"]
    for line in cap["veth"]["tcpdump_lines"] + cap["patch"]["ctl_lines"]:
        assert line in proc.stdout, f"not shown: {line}"
    # Every ovslite-ctl command that built the topology was echoed.
    assert any(c.endswith(f"add-port {names['br_a']} {names['patch_a']} --type patch "
                          f"--peer {names['patch_b']}") for c in doc["commands"])
    assert f"$ ovslite-ctl --socket {doc['dir']}/ovslite.sock add-br {names['br_a']}" in proc.stdout


def test_chart_written(quick):
    _, doc = quick
    assert doc["chart"].endswith(".png") and os.path.getsize(doc["chart"]) > 0


def test_nothing_left_behind(quick):
    _, doc = quick
    assert doc["leftovers"] == []
    assert_nothing_left(doc)


def test_keep_then_teardown(tmp_path):
    out = tmp_path / "demo.json"
    proc = run_demo("--quick", "--keep", "--json", str(out), "--results-dir", str(tmp_path))
    assert proc.returncode == 0, f"demo --keep failed:\n{proc.stdout}\n{proc.stderr}"
    doc = json.loads(out.read_text())
    try:
        assert "--teardown" in doc["teardown"] and doc["teardown"] in proc.stdout
        h1 = doc["namespaces"]["h1"]
        ping = subprocess.run(["ip", "netns", "exec", h1, "ping", "-c", "1", "-W", "2", "10.66.0.2"],
                              capture_output=True, text=True, timeout=20)
        assert ping.returncode == 0, f"kept topology does not forward: {ping.stdout}{ping.stderr}"
        show = subprocess.run([str(Path(sys.executable).parent / "ovslite-ctl"), "--socket",
                               f"{doc['dir']}/ovslite.sock", "show"],
                              capture_output=True, text=True, timeout=20)
        assert show.returncode == 0 and doc["names"]["veth_a"] in show.stdout
    finally:
        down = run_demo("--teardown", doc["dir"], timeout=60)
    assert down.returncode == 0, f"teardown failed:\n{down.stdout}\n{down.stderr}"
    assert_nothing_left(doc)


def test_missing_tool_is_one_line(tmp_path):
    """With iperf3 off the PATH the demo stops before making anything, saying what is missing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ip", "ping", "trafgen", "tcpdump", "ss", "timeout", "sysctl"):
        path = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True,
                              text=True).stdout.strip()
        if path:
            (bin_dir / tool).symlink_to(path)
    proc = run_demo("--quick", timeout=60, env={**os.environ, "PATH": str(bin_dir)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("demo: missing iperf3"), proc.stderr
    assert proc.stdout == ""
