"""docs/overlay.md's step-by-step guides, run as written on simulated lab VMs.

Each `###` section of the guides part is one scenario. In it, every indented
code block whose first line is `# on A:` (or `# on B:`, `# on A, B and C:`...)
is run as one shell script (`sh -e`) on those hosts, in the order of the
page; a block that fails fails the test, so a command that no longer works
cannot stay in the docs. Other code blocks (output, alternatives) are prose.

A simulated lab VM is a network namespace with eth1 on one underlay bridge
(192.168.50.0/24 once the guide's own commands address it) and a mount
namespace of its own, with private /run/netns, /run/openvswitch,
/etc/openvswitch and /var/log/openvswitch: the guides' `ip netns add c1` and
a system-wide Open vSwitch stay inside that host, as on a real machine. Each
host runs its own ovslited (ovslite-ctl finds it through $OVSLITE_SOCKET),
and an Open vSwitch (ovsdb-server, ovs-vswitchd, default paths) where the
scenario uses `ovs-vsctl` on it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .daemon import socket_accepts
from .netns import Network, run, wait_for, why_unusable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]

DOC = Path(__file__).resolve().parents[1] / "docs" / "overlay.md"
GUIDES = "## Step by step"
MARK = re.compile(r"^# on ([A-C](?:(?:, | and )[A-C])*):$")
PRIVATE_DIRS = ("/run/netns", "/run/openvswitch", "/etc/openvswitch", "/var/log/openvswitch")
OVS_START = """
ovsdb-tool create /etc/openvswitch/conf.db /usr/share/openvswitch/vswitch.ovsschema
ovsdb-server /etc/openvswitch/conf.db --remote=punix:/run/openvswitch/db.sock \
  --pidfile=/run/openvswitch/ovsdb-server.pid --log-file=/var/log/openvswitch/ovsdb-server.log --detach
ovs-vsctl --no-wait init
ovs-vswitchd --pidfile=/run/openvswitch/ovs-vswitchd.pid \
  --log-file=/var/log/openvswitch/ovs-vswitchd.log --detach
"""


def scenarios() -> dict[str, list[tuple[list[str], str]]]:
    """{section title: [(hosts, script), ...]} from the guides part of the page."""
    text = DOC.read_text()
    part = text[text.index(GUIDES):]
    part = part[:part.index("\n## ", 1)] if "\n## " in part[1:] else part
    found: dict[str, list] = {}
    title = None
    block: list[str] = []

    def flush():
        if title and block and MARK.match(block[0]):
            hosts = re.findall(r"[A-C]", block[0])
            found.setdefault(title, []).append((hosts, "\n".join(block[1:]) + "\n"))
        block.clear()

    for line in part.splitlines():
        if line.startswith("### "):
            flush()
            title = line[4:].strip()
        elif line.startswith("    "):
            if MARK.match(line[4:]):
                flush()
            block.append(line[4:])
        elif line.strip() == "" and block:
            block.append("")
        else:
            flush()
    flush()
    return {t: [(h, s.rstrip() + "\n") for h, s in steps] for t, steps in found.items()}


class LabVM:
    """Host X: its namespaces, a shell runner, its ovslited."""

    def __init__(self, net: Network, name: str, underlay_ns: str, workdir: Path):
        self.name = name
        self.ns = net.add_namespace(name)
        run(["ip", "link", "add", "eth1", "netns", self.ns, "type", "veth", "peer", "name",
             f"vm{name}", "netns", underlay_ns])
        run(["ip", "-n", underlay_ns, "link", "set", f"vm{name}", "master", "ubr", "up"])
        mounts = " && ".join(f"mkdir -p {d} && mount -t tmpfs tmpfs {d}" for d in PRIVATE_DIRS)
        # the mount namespace lives as long as this process (killed by net.close)
        self.holder = net.popen(["ip", "netns", "exec", self.ns, "unshare", "-m", "--propagation",
                                 "private", "sh", "-c", f"{mounts} && echo ready && exec sleep 3600"],
                                stdout=subprocess.PIPE, text=True)
        assert self.holder.stdout.readline().strip() == "ready", f"host {name}: no mount namespace"
        self.socket = str(workdir / f"{name}.sock")
        self.env = {**os.environ, "OVSLITE_SOCKET": self.socket,
                    "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        self.daemon = net.popen(self.enter(sys.executable, "-m", "ovslite", "--db",
                                           str(workdir / f"{name}.db"), "--socket", self.socket,
                                           "--log-format", "json"),
                                stderr=open(workdir / f"{name}.log", "w"))
        wait_for(lambda: socket_accepts(self.socket), timeout=15, what=f"ovslited on {name}")
        self.ovs = False

    def enter(self, *cmd: str) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", *cmd]

    def sh(self, script: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.enter("sh", "-ec", script), capture_output=True, text=True,
                              env=self.env, timeout=timeout, stdin=subprocess.DEVNULL)

    def start_ovs(self) -> None:
        proc = self.sh(OVS_START)
        assert proc.returncode == 0, f"Open vSwitch did not start on {self.name}: {proc.stderr}"
        self.ovs = True

    def stop_ovs(self) -> None:
        if self.ovs:
            self.sh("ovs-appctl -t ovs-vswitchd exit --cleanup; ovs-appctl -t ovsdb-server exit")


@pytest.mark.parametrize("title", list(scenarios()))
def test_guide_runs_as_written(net, tmp_path, title):
    steps = scenarios()[title]
    names = sorted({h for hosts, _ in steps for h in hosts})
    uns = net.add_namespace("u")
    run(["ip", "-n", uns, "link", "add", "ubr", "type", "bridge"])
    run(["ip", "-n", uns, "link", "set", "ubr", "up"])
    vms = {n: LabVM(net, n, uns, tmp_path) for n in names}
    try:
        for n in names:
            if any(n in hosts and "ovs-vsctl" in script for hosts, script in steps):
                if not shutil.which("ovs-vswitchd"):
                    pytest.skip("Open vSwitch is not installed (integration/bench/sw_ovs.py installs it)")
                vms[n].start_ovs()
        for hosts, script in steps:
            for n in hosts:
                proc = vms[n].sh(script)
                print(f"--- {title}, on {n}:\n{proc.stdout}")  # pytest -s: the output the page quotes
                assert proc.returncode == 0, (
                    f"{title}: on {n}, this block failed (exit {proc.returncode}):\n{script}\n"
                    f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}")
    finally:
        for vm in vms.values():
            vm.stop_ovs()
