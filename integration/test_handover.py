"""Restarting the daemon in place (SIGUSR2, no systemd): the ports are handed over.

The daemon execs itself with its port fds (ovslite.handover): internal ports
keep their kernel device (same ifindex, the addresses a user gave it, a
container's NIC stays in the container), and frames arriving during the
restart wait in the kernel and are forwarded afterwards. The loss under a
steady 10,000 frames/s is measured with integration/flow.py and printed.
(Under systemd the same hand-over goes through the fd store:
integration/test_service.py.)
"""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .daemon import Daemon, log_records, port_stats, socket_accepts
from .netns import RUN_ID, Host, run, wait_for, why_unusable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(why_unusable() is not None, reason=str(why_unusable())),
]

FLOW = str(Path(__file__).with_name("flow.py"))
RESTART_TIMEOUT = 20.0
#: the issue's first target for frames lost in a restart at 10,000 frames/s
LOSS_TARGET = 500


@pytest.fixture
def host_addrs():
    """Root-namespace addresses added by a test as (dev, cidr); removed at teardown."""
    added: list[tuple[str, str]] = []
    yield added
    for dev, cidr in added:
        if os.path.exists(f"/sys/class/net/{dev}"):
            run(["ip", "addr", "del", cidr, "dev", dev], check=False)


def started_count(d: Daemon) -> int:
    return sum(1 for r in log_records(d.stderr()) if r["event"] == "started")


def restart_in_place(d: Daemon) -> float:
    """SIGUSR2, then wait for the new instance's `started`; returns the seconds it took."""
    before = started_count(d)
    pid = d.proc.pid
    t0 = time.monotonic()
    os.kill(pid, signal.SIGUSR2)
    wait_for(lambda: started_count(d) > before or d.proc.poll() is not None,
             timeout=RESTART_TIMEOUT, interval=0.02, what="the restarted daemon's `started`")
    took = time.monotonic() - t0
    assert d.proc.poll() is None, f"the daemon exited {d.proc.returncode} on SIGUSR2:\n{d.stderr()}"
    assert d.proc.pid == pid
    wait_for(lambda: socket_accepts(d.socket), timeout=5, what="the control socket")
    return took


def ifindex(host_or_ns: str | None, dev: str) -> int:
    cmd = ["cat", f"/sys/class/net/{dev}/ifindex"]
    if host_or_ns:
        cmd = ["ip", "netns", "exec", host_or_ns, *cmd]
    return int(run(cmd).stdout)


def addrs(ns: str | None, dev: str) -> list[str]:
    cmd = ["ip", "-j", "addr", "show", "dev", dev]
    if ns:
        cmd[1:1] = ["-n", ns]
    info = json.loads(run(cmd).stdout)[0]
    return [f"{a['local']}/{a['prefixlen']}" for a in info["addr_info"] if a["family"] == "inet"]


def ports_up(d: Daemon) -> dict[str, bool]:
    return {p["name"]: p["up"] for b in d.ctl_json("show")["bridges"] for p in b["ports"]}


def free_subnet() -> str:
    """A 10.79.N (/24) not on any root-namespace interface."""
    used = run(["ip", "-4", "-o", "addr"]).stdout + run(["ip", "-4", "route"]).stdout
    for i in range(250):
        prefix = f"10.79.{(int(RUN_ID, 16) + i) % 250 + 1}"
        if f"{prefix}." not in used:
            return prefix
    raise AssertionError("no free 10.79.N/24")


# -- the flow -------------------------------------------------------------------------

def measure_loss(sender: Host, receiver: Host, action, rate: int = 10000,
                 seconds: float = 6.0, at: float = 2.0) -> dict:
    """Send `rate` frames/s from `sender` to `receiver` for `seconds`; call
    `action()` `at` seconds in. Returns the figures (lost = sent - distinct received)."""
    run_tag = secrets.token_hex(4)
    counter = receiver.popen(sys.executable, FLOW, "count", receiver.ifname, run_tag,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([counter.stdout], [], [], 10)
    assert ready and counter.stdout.readline().strip() == "counting", "the counter did not start"
    sender_proc = sender.popen(sys.executable, FLOW, "send", sender.ifname, receiver.mac, run_tag,
                               str(rate), str(seconds), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(at)
    action_result = action()
    out, err = sender_proc.communicate(timeout=seconds + 30)
    assert sender_proc.returncode == 0, err
    sent = json.loads(out)
    time.sleep(1.0)  # the last frames, and a backlog still being forwarded
    counter.send_signal(signal.SIGTERM)
    out, err = counter.communicate(timeout=10)
    assert counter.returncode == 0, err
    got = json.loads(out.strip().splitlines()[-1])
    return {**sent, **got, "lost": sent["sent"] - got["distinct"], "action": action_result}


# -- tests ------------------------------------------------------------------------------

def test_restart_in_place_keeps_internal_and_container_ports(daemon, net, host_addrs):
    net.subnet = free_subnet()
    br = net.name("br")
    daemon.ctl("add-br", br)
    h1 = net.add_host("h1", 2)
    daemon.ctl("add-port", br, h1.port)
    # an internal port in the host, addressed by hand as a user would
    inp = net.name("in")
    daemon.ctl("add-port", br, inp, "--type", "internal")
    with open(f"/proc/sys/net/ipv6/conf/{inp}/disable_ipv6", "w") as f:
        f.write("1")
    run(["ip", "addr", "add", f"{net.subnet}.1/24", "dev", inp])
    host_addrs.append((inp, f"{net.subnet}.1/24"))
    run(["ip", "link", "set", inp, "up"])
    # a container's NIC: moved, renamed and addressed by ovslite
    ns = net.add_namespace("c1")
    c1 = Host(net, "c1", ns, "eth0", net.name("c1"), f"{net.subnet}.3")
    daemon.ctl("add-port", br, c1.port, "--type", "internal", "--netns", ns, "--ifname", "eth0",
               "--ip", f"{net.subnet}.3/24")
    h1.ping(f"{net.subnet}.1")
    h1.ping(c1)
    before = {"in": (ifindex(None, inp), addrs(None, inp)),
              "c1": (ifindex(ns, "eth0"), addrs(ns, "eth0"), c1.mac)}

    took = restart_in_place(daemon)
    print(f"restart in place: {took:.2f}s until `started`")

    after = {"in": (ifindex(None, inp), addrs(None, inp)),
             "c1": (ifindex(ns, "eth0"), addrs(ns, "eth0"), c1.mac)}
    assert after == before, f"devices changed across the restart: {before} -> {after}"
    up = ports_up(daemon)
    assert all(state for name, state in up.items() if name != br), up  # br itself is down
    records = log_records(daemon.stderr())
    assert [r["reattached"] for r in records if r["event"] == "started"][-1] == 4, records[-5:]
    h1.ping(f"{net.subnet}.1")
    h1.ping(c1)
    c1.ping(h1)
    assert not daemon.errors_logged(), daemon.errors_logged()

    # SIGTERM without systemd: as before, the devices the daemon made go with it
    assert daemon.stop() == 0
    assert not os.path.exists(f"/sys/class/net/{inp}"), f"{inp} outlived the daemon"
    assert run(["ip", "-n", ns, "link", "show", "eth0"], check=False).returncode != 0, (
        "the container's eth0 outlived the daemon")


def test_restart_in_place_loses_few_frames(daemon, net):
    """10,000 frames/s h1 -> h2 through two system ports while the daemon restarts."""
    br = net.name("br")
    daemon.ctl("add-br", br)
    h1, h2 = net.add_host("h1"), net.add_host("h2")
    daemon.ctl("add-port", br, h1.port)
    daemon.ctl("add-port", br, h2.port)
    h2.ping(h1, count=1)  # the switch learns h2: the flow is unicast

    result = measure_loss(h1, h2, lambda: restart_in_place(daemon))
    print(f"\nSIGUSR2 restart under {result['sent'] / result['seconds']:.0f} frames/s: "
          f"{result['lost']} of {result['sent']} frames lost, {result['duplicates']} duplicated, "
          f"{result['reordered']} out of order; restart took {result['action']:.2f}s "
          f"(missing runs {result['missing']})")
    assert result["counter_drops"] == 0, f"the counter itself dropped frames: {result}"
    assert result["sent"] >= 50000, result
    assert result["lost"] < LOSS_TARGET, result
    # and forwarding goes on normally afterwards
    h1.ping(h2)
    records = log_records(daemon.stderr())
    assert any(r["event"] == "port drained its spill socket" and r["port"] == h1.port
               for r in records), "h1's port did not drain its spill socket"
    assert not daemon.errors_logged(), daemon.errors_logged()


def test_restart_in_place_follows_the_database(daemon, net):
    """Fds of a port deleted from the database while running are closed (its
    TAP goes); a port whose configuration changed gets a new device."""
    br = net.name("br")
    daemon.ctl("add-br", br)
    gone, moved = net.name("gn"), net.name("mv")
    daemon.ctl("add-port", br, gone, "--type", "internal")
    ns = net.add_namespace("c1")
    daemon.ctl("add-port", br, moved, "--type", "internal", "--netns", ns, "--ifname", "eth0")
    old_index = ifindex(ns, "eth0")
    db = json.loads(daemon.db.read_text())
    ports = db["bridges"][br]["ports"]
    del ports[gone]
    ports[moved]["options"]["ifname"] = "eth1"
    daemon.db.write_text(json.dumps(db))

    restart_in_place(daemon)

    assert not os.path.exists(f"/sys/class/net/{gone}"), f"{gone} survived its removal"
    assert run(["ip", "-n", ns, "link", "show", "eth0"], check=False).returncode != 0, (
        "the old eth0 is still in the container")
    assert ifindex(ns, "eth1") != old_index
    assert ports_up(daemon)[moved]
    text = daemon.stderr()
    assert "handed-over TAP does not match the configuration" in text
    assert "closed handed-over fds nobody claimed" in text


def link(ns: str | None, dev: str) -> dict:
    """`ip -s -j link show` of `dev`, in namespace `ns` (None: the root one)."""
    cmd = ["ip", "-s", "-j", "link", "show", "dev", dev]
    if ns:
        cmd[1:1] = ["-n", ns]
    return json.loads(run(cmd).stdout)[0]


def tap_tx_dropped(ns: str | None, dev: str) -> int:
    """Frames the TAP device dropped on their way to the daemon (its TX side)."""
    return link(ns, dev)["stats64"]["tx"]["dropped"]


def softnet_dropped() -> int:
    """Frames the kernel dropped from full per-CPU input queues (netdev_max_backlog)."""
    with open("/proc/net/softnet_stat") as f:
        return sum(int(line.split()[1], 16) for line in f)


def out_drops(daemon: Daemon, br: str, port: str) -> dict:
    """The daemon's counters of frames `port` did not send (dump-ports), if any."""
    stats = port_stats(daemon, br).get(port, {})
    return {k: v for k, v in stats.items() if "tx" in k and ("drop" in k or "err" in k) and v}


def assert_nothing_lost(what: str, result: dict, dropped: int, extra: str = "") -> None:
    print(f"\nSIGUSR2 restart, {what} -> h2 under {result['sent'] / result['seconds']:.0f} "
          f"frames/s: {result['lost']} of {result['sent']} frames lost, {result['duplicates']} "
          f"duplicated (restart took {result['action']:.2f}s; missing runs "
          f"{result['missing'][:3]}; the TAP dropped {dropped}{extra})")
    assert result["counter_drops"] == 0 and result["send_errors"] == 0, result
    assert result["sent"] >= 50000, result
    assert result["duplicates"] == 0, result
    assert result["lost"] == 0 and dropped == 0, f"the TAP dropped {dropped}: {result}"


def test_restart_in_place_frames_from_a_container(daemon, net):
    """The other way in: 10,000 frames/s from a container's internal port (a
    TAP) to h2. During the restart they queue in the TAP, whose queue is made
    long for it and short again after, under the noqueue qdisc: nothing is
    lost (under pfifo_fast each of those two changes dropped a few frames)."""
    net.subnet = free_subnet()
    br = net.name("br")
    daemon.ctl("add-br", br)
    h2 = net.add_host("h2", 2)
    daemon.ctl("add-port", br, h2.port)
    ns = net.add_namespace("c1")
    c1 = Host(net, "c1", ns, "eth0", net.name("c1"), f"{net.subnet}.3")
    daemon.ctl("add-port", br, c1.port, "--type", "internal", "--netns", ns, "--ifname", "eth0",
               "--ip", f"{net.subnet}.3/24")
    h2.ping(c1, count=1)
    dropped, backlog = tap_tx_dropped(ns, "eth0"), softnet_dropped()

    result = measure_loss(c1, h2, lambda: restart_in_place(daemon))
    dropped, backlog = tap_tx_dropped(ns, "eth0") - dropped, softnet_dropped() - backlog
    assert_nothing_lost("container (TAP)", result, dropped,
                        f"; input queues dropped {backlog}; to h2 {out_drops(daemon, br, h2.port)}")


@dataclass
class RootSender:
    """A sender on a device of the root namespace (measure_loss's `sender`)."""

    net: object
    ifname: str

    def popen(self, *cmd: str, **kw) -> subprocess.Popen:
        return self.net.popen(list(cmd), **kw)


def test_restart_in_place_frames_from_a_tap_port(daemon, net):
    """10,000 frames/s sent into a `tap` port ovslite created, to h2: its queue
    is made long for the restart too, under noqueue, and nothing is lost
    (4492 and 6247 of 60,000 were, with the TAP's usual 1000 frames)."""
    br = net.name("br")
    daemon.ctl("add-br", br)
    h2 = net.add_host("h2", 2)
    daemon.ctl("add-port", br, h2.port)
    tap = net.name("tp")
    daemon.ctl("add-port", br, tap, "--type", "tap")
    with open(f"/proc/sys/net/ipv6/conf/{tap}/disable_ipv6", "w") as f:
        f.write("1")  # nothing but the flow from it
    run(["ip", "link", "set", tap, "up"])
    dropped, backlog = tap_tx_dropped(None, tap), softnet_dropped()

    result = measure_loss(RootSender(net, tap), h2, lambda: restart_in_place(daemon))
    after = link(None, tap)
    dropped, backlog = after["stats64"]["tx"]["dropped"] - dropped, softnet_dropped() - backlog
    assert_nothing_lost("tap port", result, dropped,
                        f"; qdisc {after['qdisc']}, txqlen {after['txqlen']}; input queues "
                        f"dropped {backlog}; to h2 {out_drops(daemon, br, h2.port)}")
