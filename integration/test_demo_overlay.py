"""`make demo-overlay` end to end: integration/demo_overlay.py --quick, read back through --json.

Checks what the demo claims to show: every pair of containers pings; one
broadcast from c1 reaches c2 and c3 exactly once each (tcpdump lines printed)
and c1 not at all, with the tunnel counters still afterwards; TCP moved
bytes; h1's daemon restarted in place (same pid, its ports re-attached)
under 10,000 frames/s and the frames lost are printed (and few); nothing is
left behind. Also: Ctrl-C in the middle removes everything, and a missing
tool stops the demo with one line before it makes anything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .demo_bench import demo_names_left
from .netns import why_unusable
from .test_demo import processes_mentioning

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "integration" / "demo_overlay.py"
#: the restart-loss target of docs/service.md's tests (at 10,000 frames/s)
LOSS_TARGET = 500


def run_demo(*args: str, timeout: float = 240, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEMO), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)


def assert_nothing_left(tag: str, workdir: str) -> None:
    assert demo_names_left(tag) == []
    assert processes_mentioning(workdir) == []
    assert not os.path.exists(workdir)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("overlay") / "demo.json"
    proc = run_demo("--quick", "--json", str(out))
    assert proc.returncode == 0, f"demo failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc, json.loads(out.read_text())


def test_every_pair_pings(quick):
    proc, doc = quick
    pairs = {(p["src"], p["dst"]) for p in doc["pings"] if p["received"] == p["sent"] == 3}
    assert pairs == {("c1", "c2"), ("c1", "c3"), ("c2", "c3")}, doc["pings"]
    assert "c2 -> c3: 3/3 replies" in proc.stdout


def test_one_broadcast_reaches_each_other_container_exactly_once(quick):
    proc, doc = quick
    bc = doc["broadcast"]
    assert bc["counts"] == {"c1": 0, "c2": 1, "c3": 1}, bc
    for name in ("c2", "c3"):
        assert "ICMP echo request" in bc["lines"][name][0] and bc["lines"][name][0] in proc.stdout
    # head-end replication at h1, split horizon at h2 and h3, and then quiet
    assert bc["tunnel_deltas"]["h1 vx-h2"] == {"rx": 0, "tx": 1}, bc["tunnel_deltas"]
    assert bc["tunnel_deltas"]["h2 vx-h3"] == {"rx": 0, "tx": 0}, bc["tunnel_deltas"]
    assert bc["idle_unchanged"], bc["idle_moved"]


def test_tcp_between_two_hosts(quick):
    _, doc = quick
    assert doc["tcp"]["bytes"] > 1_000_000, doc["tcp"]


def test_restart_under_traffic_is_reported(quick):
    proc, doc = quick
    r = doc["restart"]
    assert r["method"].startswith("SIGUSR2")
    assert r["reattached"] == 4, r  # br-tun, c1, vx-h2, vx-h3
    flow = r["flow"]
    assert flow["sent"] >= 30000 and flow["counter_drops"] == 0, flow
    assert f"{flow['lost']} of {flow['sent']:,} lost" in proc.stdout
    # stale: frames a sending port gave up on when its daemon fell behind (docs/service.md)
    assert flow["lost"] - flow["stale"] < LOSS_TARGET, flow
    assert r["ping"]["received"] > 0, r["ping"]
    assert f"kill -USR2 {r['pid']}" in proc.stdout


def test_commands_are_echoed_and_nothing_is_left_behind(quick):
    proc, doc = quick
    sock = f"{doc['dir']}/h1/ovslite.sock"
    assert (f"$ ovslite-ctl --socket {sock} add-port br-tun vx-h2 --type vxlan "
            "-o remote_ip=192.168.50.2 -o key=100") in proc.stdout
    assert doc["leftovers"] == [] and "nothing left behind" in proc.stdout
    assert_nothing_left(doc["tag"], doc["dir"])


def test_ctrl_c_cleans_up():
    """SIGINT once the daemons run: exit 130, and everything the demo made is gone."""
    proc = subprocess.Popen([sys.executable, str(DEMO), "--quick"], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.monotonic() + 120
    try:
        while "== 4." not in seen and time.monotonic() < deadline:  # three daemons up, mesh built
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        assert "== 4." in seen, seen
        tag = seen.split()[3]  # "ovslite overlay demo TAG (quick)"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, seen + out + err
    assert "nothing left behind" in out, out
    assert "interrupted" in err and "everything it made was removed" in err, err
    assert_nothing_left(tag, f"/tmp/ovslite-overlay-{tag}")


def test_missing_tool_is_one_line(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ip", "ping", "tcpdump", "timeout", "sysctl"):
        path = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True,
                              text=True).stdout.strip()
        if path:
            (bin_dir / tool).symlink_to(path)
    proc = run_demo("--quick", timeout=60, env={**os.environ, "PATH": str(bin_dir)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("demo-overlay: missing iperf3"), proc.stderr
    assert proc.stdout == ""
